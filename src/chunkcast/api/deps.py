"""Request dependencies: the platform of this app, and admin authentication."""

from typing import Annotated

from fastapi import Depends, Header, Request

from chunkcast.domain.errors import Unauthorized
from chunkcast.domain.signing import token_matches
from chunkcast.runtime import Platform


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None
                  ) -> None:
    """Write endpoints need ``Authorization: Bearer <admin token>``; only its digest is kept."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(token.strip(),
                                                       request.app.state.admin_digest):
        raise Unauthorized("a valid admin token is required (Authorization: Bearer …)")


AdminDep = Depends(require_admin)
