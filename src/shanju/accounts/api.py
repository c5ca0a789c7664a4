"""JSON API routes of the accounts domain (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.accounts.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    NotificationPage,
    NotificationRead,
    UserCreate,
    UserRead,
)
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession

router = APIRouter(tags=["accounts"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not signed in, or the token is invalid or revoked."},
}


@router.post(
    "/auth/tokens",
    response_model=ApiTokenCreated,
    status_code=201,
    summary="Create a personal API token with an email and password",
    responses={401: {"description": "`invalid_credentials`: wrong email or password."}},
)
def create_token(body: ApiTokenCreate, session: DbSession) -> ApiTokenCreated:
    """The plain token is in this answer only; store it safely."""
    user = accounts.authenticate_api(session=session, email=body.email, password=body.password)
    token, plain = accounts.do_create_api_token(session=session, user=user, name=body.name)
    return ApiTokenCreated(**ApiTokenRead.model_validate(token).model_dump(), token=plain)


@router.post(
    "/users",
    response_model=UserRead,
    status_code=201,
    summary="Sign up",
    responses={409: {"description": "`email_taken`"}, 422: {"description": "Invalid input."}},
)
def create_user(body: UserCreate, session: DbSession) -> User:
    """Create a donor, organization-staff or enterprise-staff account."""
    return accounts.do_signup(
        session=session, email=body.email, password=body.password,
        display_name=body.display_name, role=body.role, province=body.province,
    )


@router.get("/me", response_model=UserRead, summary="Your account", responses=_ERRORS)
def me(user: CurrentUser) -> User:
    """The account the request is authenticated as."""
    return user


@router.get(
    "/me/notifications",
    response_model=NotificationPage,
    summary="Your notifications, newest first",
    responses=_ERRORS,
)
def notifications(session: DbSession, user: CurrentUser) -> NotificationPage:
    """The newest 50 notifications and the unread count, in English like every API message."""
    items = accounts.render_notifications(
        accounts.list_notifications(session=session, user=user), locale="en"
    )
    return NotificationPage(
        items=[NotificationRead.model_validate(n) for n in items],
        unread=accounts.count_unread_notifications(session=session, user=user),
    )


@router.post(
    "/me/notifications/read",
    status_code=204,
    summary="Mark all your notifications read",
    responses=_ERRORS,
    dependencies=[CsrfChecked],
)
def mark_notifications_read(session: DbSession, user: CurrentUser) -> Response:
    """Mark every unread notification read."""
    accounts.do_mark_notifications_read(session=session, user=user)
    return Response(status_code=204)


@router.delete(
    "/me/sessions",
    status_code=204,
    summary="Sign out everywhere",
    responses=_ERRORS,
)
def end_sessions(session: DbSession, user: CurrentUser) -> Response:
    """End every browser session of yours. API tokens are not revoked (revoke them one by one
    with `DELETE /me/tokens/{id}`); a request made with a session cookie ends that session
    too."""
    accounts.do_end_all_sessions(session=session, user=user, actor=user)
    return Response(status_code=204)


@router.get(
    "/me/tokens",
    response_model=list[ApiTokenRead],
    summary="Your API tokens (without their secrets)",
    responses=_ERRORS,
)
def tokens(session: DbSession, user: CurrentUser) -> list[ApiTokenRead]:
    """Every token of yours, revoked ones included, newest first."""
    return [
        ApiTokenRead.model_validate(t)
        for t in accounts.list_api_tokens(session=session, user=user)
    ]


@router.delete(
    "/me/tokens/{token_id}",
    status_code=204,
    summary="Revoke one of your API tokens",
    responses={**_ERRORS, 404: {"description": "`token_not_found`"}},
    dependencies=[CsrfChecked],
)
def revoke_token(token_id: DbId, session: DbSession, user: CurrentUser) -> Response:
    """A revoked token stops working at once; revoking twice is harmless."""
    accounts.do_revoke_api_token(session=session, user=user, token_id=token_id)
    return Response(status_code=204)
