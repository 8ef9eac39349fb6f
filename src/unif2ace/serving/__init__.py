"""HTTP serving: an OpenAI-compatible API and a web demo over :class:`~unif2ace.pipeline.Unif2acePipeline`.

``create_app(pipeline, ServerSettings(...))`` builds the FastAPI app (needs the ``serve`` extra); ``unif2ace serve``
and ``unif2ace web`` run it with uvicorn. See ``docs/serving.md``.
"""

from unif2ace.serving.settings import API_KEY_ENV, ServerSettings

__all__ = ["API_KEY_ENV", "ServerSettings", "create_app"]


def create_app(*args, **kwargs):
    """Build the server app (see :func:`unif2ace.serving.app.create_app`); imports FastAPI lazily."""
    from unif2ace.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)
