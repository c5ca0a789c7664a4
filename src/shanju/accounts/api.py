"""JSON API routes of the accounts domain (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.accounts.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    NotificationPage,
    NotificationRead,
    SignupAccepted,
    SignupConfirm,
    UserCreate,
    UserRead,
)
from shanju.core import mail, ratelimit
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession
from shanju.core.web import request_locale
from shanju.gifts import flows as gift_flows

router = APIRouter(tags=["accounts"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not signed in, or the token is invalid or revoked."},
}


@router.post(
    "/auth/tokens",
    response_model=ApiTokenCreated,
    status_code=201,
    summary="Create a personal API token with an email and password",
    responses={401: {"description": "`invalid_credentials`: wrong email or password."},
               429: {"description": "`rate_limited`: too many failed attempts for this "
                                    "account or from this address; see `Retry-After`."}},
)
def create_token(body: ApiTokenCreate, request: Request, session: DbSession) -> ApiTokenCreated:
    """The plain token is in this answer only; store it safely."""
    # Over the limit of failed attempts: refused before the password is hashed.
    hits = ratelimit.enforce(request, "password", account=accounts.normalize_email(body.email))
    user = accounts.authenticate_api(session=session, email=body.email, password=body.password)
    ratelimit.limiter(request).give_back(hits)  # only failures count
    ratelimit.enforce(request, "api_token", account=user.id)
    token, plain = accounts.do_create_api_token(session=session, user=user, name=body.name)
    return ApiTokenCreated(**ApiTokenRead.model_validate(token).model_dump(), token=plain)


@router.post(
    "/users",
    response_model=SignupAccepted,
    status_code=202,
    summary="Sign up",
    responses={422: {"description": "Invalid input (e.g. `common_password`)."},
               429: {"description": "`rate_limited`: too many sign-ups from this address."}},
)
def create_user(body: UserCreate, request: Request, session: DbSession) -> SignupAccepted:
    """Email the address a link that creates the account (confirm it with `POST
    /users/confirm`). The answer is the same when the address already has an account (it is
    then sent a notice instead), so sign-up does not reveal who is registered."""
    ratelimit.enforce(request, "signup")
    settings = request.app.state.settings
    normalized = accounts.do_request_signup(
        session=session, email=body.email, password=body.password,
        display_name=body.display_name, role=body.role, province=body.province,
        locale=request_locale(request), base_url=settings.base_url,
        platform_name=settings.platform_name,
    )
    mail.deliver_after_commit(session, database=request.app.state.db,
                              mailer=request.app.state.mailer)
    return SignupAccepted(email=normalized)


@router.post(
    "/users/confirm",
    response_model=UserRead,
    status_code=201,
    summary="Confirm a sign-up with the token of its emailed link",
    responses={404: {"description": "`signup_link_invalid`: unknown, used or expired"},
               409: {"description": "`email_taken`: the address got an account meanwhile"}},
)
def confirm_user(body: SignupConfirm, request: Request, session: DbSession) -> User:
    """Create the account (the token is the last part of the emailed link); gifts given as a
    guest with this email address become the account's."""
    user, _ = accounts.do_confirm_signup(session=session, token=body.token)
    gift_flows.do_claim_guest_gifts(session=session, user=user,
                                    secret_key=request.app.state.settings.secret_key)
    return user


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
