"""``unif2ace demo``: all four tasks on the shipped example faces, written as PNG + JSON + one HTML page.

The example faces (``unif2ace/assets/examples``) are four held-out (test-split) faces of our synthetic corpus
``data/faces-mini`` (128², research-only licence like the corpus, see the README).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from unif2ace.pipeline.outputs import save_image
from unif2ace.utils.io import atomic_write_json, atomic_write_text

__all__ = ["DEMO_PROMPTS", "example_faces", "run_demo"]

DEMO_PROMPTS = [
    "A smiling young woman with long blond hair and blue eyes.",
    "An older man with short grey hair and glasses, looking at the camera.",
]
# A question of a kind the shipped model learned: hair colour is annotated below the confidence captions and VQA use.
DEMO_QUESTION = "What emotion does the person show?"
DEMO_EDIT = ("hair", "A person with short red hair.")


def example_faces() -> list[Path]:
    """The shipped example face images, sorted."""
    folder = Path(str(resources.files("unif2ace"))) / "assets" / "examples"
    faces = sorted(folder.glob("*.png"))
    if not faces:
        raise FileNotFoundError(f"no example faces in {folder}; reinstall unif2ace")
    return faces


def _edit_example(pipe: Any, face: Path, seed: int, steps: int | None, guidance: float | None) -> tuple[Any, str]:
    """Region edit of the hair; without dlib, the same call with a mask of the top third (noted in the page)."""
    region, prompt = DEMO_EDIT
    try:
        return pipe.edit(face, prompt, region=region, seed=seed, steps=steps, guidance_scale=guidance), region
    except FileNotFoundError:  # dlib / its model files are not installed
        import numpy as np
        from PIL import Image

        size = Image.open(face).size
        mask = np.zeros((size[1], size[0]), dtype=np.uint8)
        mask[: size[1] // 3] = 255
        out = pipe.edit(face, prompt, mask=mask, seed=seed, steps=steps, guidance_scale=guidance)
        return out, "top third (mask; dlib not installed)"


def run_demo(
    pipe: Any,
    out_dir: str | Path,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    progress: Callable[[str], Any] | None = None,
) -> Path:
    """Generate, caption, answer and edit; write ``out_dir/index.html`` with the results.

    Returns:
        The HTML page's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    faces = example_faces()
    sections: list[str] = []
    record: dict[str, Any] = {"model": pipe.name, "model_hash": pipe.model_hash, "seed": seed}

    say("generate")
    gen = pipe.generate(DEMO_PROMPTS, seed=seed, steps=steps, guidance_scale=guidance)
    gen.save(out, "generate")
    cells = [_figure(f"generate-{i}.png", p) for i, p in enumerate(gen.prompts)]
    sections.append(_section("Text → face", f"seed {seed}, {gen.metadata['steps']} steps, guidance "
                                            f"{gen.metadata['guidance_scale']}", cells))  # fmt: skip
    record["generate"] = gen.metadata

    rows, answers = [], []
    for i, face in enumerate(faces):
        say(f"caption + ask {face.name}")
        save_image(pipe.reconstruct(face), out / f"face-{i}.png")
        cap = pipe.caption(face, seed=seed)
        ans = pipe.ask(face, DEMO_QUESTION, seed=seed)
        answers.append({"face": face.name, "caption": cap.text, "question": DEMO_QUESTION, "answer": ans.text})
        rows.append(_figure(f"face-{i}.png", f"<b>Caption:</b> {html.escape(cap.text)}<br><b>Q:</b> "
                                             f"{html.escape(DEMO_QUESTION)}<br><b>A:</b> {html.escape(ans.text)}",
                            escape=False))  # fmt: skip
    sections.append(_section("Face → caption and answers", "inputs shown as the tokenizer reconstructs them", rows))
    record["understanding"] = answers

    say("edit")
    edit, region = _edit_example(pipe, faces[0], seed, steps, guidance)
    edit.save(out, "edit")
    cells = [
        _figure("face-0.png", "input (reconstruction)"),
        _figure("edit-mask.png", f"region: {region}"),
        _figure("edit-0.png", edit.prompts[0]),
    ]
    sections.append(_section("Region edit", f"{edit.metadata['edited_tokens']} of {pipe.num_image_tokens} tokens "
                                            "regenerated; the rest kept", cells))  # fmt: skip
    record["edit"] = edit.metadata

    atomic_write_json(out / "demo.json", record)
    page = out / "index.html"
    atomic_write_text(page, _page(pipe, sections))
    return page


def _figure(src: str, caption: str, escape: bool = True) -> str:
    text = html.escape(caption) if escape else caption
    return (
        f'<figure><img src="{html.escape(src)}" width="192" height="192" alt="">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def _section(title: str, note: str, cells: list[str]) -> str:
    return f"<section><h2>{html.escape(title)}</h2><p class=note>{html.escape(note)}</p>{''.join(cells)}</section>"


def _page(pipe: Any, sections: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:70em}figure{display:inline-block;vertical-align:top;"
        "width:200px;margin:0 1em 1em 0}img{image-rendering:pixelated;border:1px solid #ccc}"
        "figcaption{font-size:.85em}.note{color:#555}"
    )
    head = f"model <code>{html.escape(pipe.name)}</code>, weights sha256 <code>{pipe.model_hash[:16]}…</code>"
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>UniF²ace demo</title>"
        f"<style>{style}</style></head><body><h1>UniF²ace demo</h1><p>{head}</p>{''.join(sections)}</body></html>\n"
    )
