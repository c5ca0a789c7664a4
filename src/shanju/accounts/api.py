"""JSON API routes of the accounts domain (under /api/v1)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response

from shanju.accounts import flows as account_flows
from shanju.accounts import phones, recovery
from shanju.accounts import service as accounts
from shanju.accounts.models import CodePurpose, User
from shanju.accounts.schemas import (
    AccountDelete,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    NotificationPage,
    NotificationRead,
    PasswordResetConfirm,
    PasswordResetRequest,
    PasswordResetSent,
    PhoneTokenCreate,
    ProfileUpdate,
    SignupAccepted,
    SignupConfirm,
    SmsCodeRequest,
    SmsCodeSent,
    UserCreate,
    UserRead,
)
from shanju.accounts.sms import SmsSender, check_phone, mask_phone
from shanju.core import mail, ratelimit
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession
from shanju.core.errors import Conflict, DomainError, NotFound
from shanju.core.web import error_response, request_locale
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


# --- password reset, SMS codes, the profile and deletion --------------------------------------


def _now(request: Request) -> dt.datetime:
    now: dt.datetime = request.app.state.clock()
    return now


def _sms(request: Request) -> SmsSender:
    sender: SmsSender | None = request.app.state.sms
    if sender is None:
        raise NotFound("Sign-in by SMS is not available on this platform.",
                       code="sms_unavailable")
    return sender


def _send_code(request: Request, session: DbSession, *, phone: str, purpose: CodePurpose,
               user: User | None) -> SmsCodeSent:
    ratelimit.limiter(request).hit_all([
        ("sms.phone_minute", phone), ("sms.phone", phone),
        ("sms.ip", ratelimit.client_address(request))])
    phones.do_send_code(session=session, phone=phone, purpose=purpose, user=user,
                        sender=_sms(request), secret_key=request.app.state.settings.secret_key,
                        now=_now(request))
    return SmsCodeSent(phone=mask_phone(phone),
                       expires_in=int(phones.CODE_LIFETIME.total_seconds()))


@router.post(
    "/auth/password-resets",
    response_model=PasswordResetSent,
    status_code=202,
    summary="Email a password reset link",
    responses={422: {"description": "`invalid_email`"},
               429: {"description": "`rate_limited`: too many for this address or client."}},
)
def request_password_reset(body: PasswordResetRequest, request: Request,
                           session: DbSession) -> PasswordResetSent:
    """The address gets a link (1 hour, once) if it has an account, a notice if not: the
    answer is the same, so it does not reveal who is registered."""
    ratelimit.enforce(request, "reset", account=accounts.normalize_email(body.email))
    settings = request.app.state.settings
    normalized = recovery.do_request_password_reset(
        session=session, email=body.email, locale=request_locale(request),
        base_url=settings.base_url, platform_name=settings.platform_name, now=_now(request))
    mail.deliver_after_commit(session, database=request.app.state.db,
                              mailer=request.app.state.mailer)
    return PasswordResetSent(email=normalized)


@router.post(
    "/auth/password-resets/confirm",
    status_code=204,
    summary="Set a new password with the token of an emailed reset link",
    responses={404: {"description": "`reset_link_invalid`: unknown, used or expired"},
               422: {"description": "`weak_password`, `common_password`, …"}},
)
def confirm_password_reset(body: PasswordResetConfirm, request: Request,
                           session: DbSession) -> Response:
    """Every browser session of the account ends; its API tokens stay (revoke them if they
    may be known to someone else)."""
    settings = request.app.state.settings
    recovery.do_reset_password(
        session=session, token=body.token, password=body.password,
        locale=request_locale(request), base_url=settings.base_url,
        platform_name=settings.platform_name, now=_now(request))
    mail.deliver_after_commit(session, database=request.app.state.db,
                              mailer=request.app.state.mailer)
    return Response(status_code=204)


@router.post(
    "/auth/sms-codes",
    response_model=SmsCodeSent,
    status_code=202,
    summary="Send a sign-in code by SMS",
    responses={404: {"description": "`sms_unavailable`: no SMS provider configured"},
               422: {"description": "`invalid_phone`: not a mainland mobile number"},
               429: {"description": "`rate_limited`: one a minute and five an hour per "
                                    "number, and a limit per client."}},
)
def send_sign_in_code(body: SmsCodeRequest, request: Request,
                      session: DbSession) -> SmsCodeSent:
    """A 6-digit code valid 5 minutes, for `POST /auth/phone-tokens`; the same answer whether
    or not the number has an account."""
    _sms(request)
    return _send_code(request, session, phone=check_phone(body.phone),
                      purpose=CodePurpose.SIGN_IN, user=None)


@router.post(
    "/auth/phone-tokens",
    response_model=ApiTokenCreated,
    status_code=201,
    summary="Create a personal API token with a phone number and its SMS code",
    responses={422: {"description": "`invalid_code`, `code_attempts_exceeded` (the fifth wrong "
                                    "code spends it), `invalid_phone`"},
               429: {"description": "`rate_limited`: too many wrong codes from this client."}},
)
def create_phone_token(body: PhoneTokenCreate, request: Request,
                       session: DbSession) -> ApiTokenCreated | Response:
    """A number without an account gets a new donor account (with only that number)."""
    _sms(request)
    hits = ratelimit.enforce(request, "code")
    try:
        user, _ = phones.do_sign_in_with_code(
            session=session, phone=check_phone(body.phone), code=body.code,
            secret_key=request.app.state.settings.secret_key, now=_now(request))
    except DomainError as exc:
        return error_response(request, exc)  # answered, not raised: the try is committed
    ratelimit.limiter(request).give_back(hits)
    ratelimit.enforce(request, "api_token", account=user.id)
    token, plain = accounts.do_create_api_token(session=session, user=user, name=body.name)
    return ApiTokenCreated(**ApiTokenRead.model_validate(token).model_dump(), token=plain)


@router.patch("/me", response_model=UserRead, summary="Change your display name",
              responses={**_ERRORS, 422: {"description": "`invalid_display_name`"}},
              dependencies=[CsrfChecked])
def update_me(body: ProfileUpdate, session: DbSession, user: CurrentUser) -> User:
    """Email and phone change through their own confirmations (the account page)."""
    recovery.do_update_profile(session=session, user=user, display_name=body.display_name)
    return user


@router.post("/me/delete/sms-code", response_model=SmsCodeSent, status_code=202,
             summary="Send the code that confirms deleting an account without a password",
             responses={**_ERRORS, 409: {"description": "`has_password`: confirm with it"}},
             dependencies=[CsrfChecked])
def send_delete_code(request: Request, session: DbSession, user: CurrentUser) -> SmsCodeSent:
    """Only for an account made with a phone (it has no password)."""
    if accounts.has_password(user) or user.phone is None:
        raise Conflict("Confirm with your password.", code="has_password")
    return _send_code(request, session, phone=user.phone, purpose=CodePurpose.DELETE, user=user)


@router.post("/me/delete", status_code=204, summary="Delete your account",
             responses={**_ERRORS, 422: {"description": "`invalid_password`, `invalid_code`"}},
             dependencies=[CsrfChecked])
def delete_me(body: AccountDelete, request: Request, session: DbSession,
              user: CurrentUser) -> Response:
    """Erases your personal data and keeps, de-identified, what the law requires (donation
    and payment records, the audit log); every session and API token ends. See
    docs/accounts.md."""
    hits = ratelimit.enforce(request, "password" if accounts.has_password(user) else "code",
                             account=accounts.normalize_email(user.email or "")
                             if accounts.has_password(user) else None)
    try:
        account_flows.check_deletion(session=session, user=user, password=body.password,
                                     code=body.code,
                                     secret_key=request.app.state.settings.secret_key,
                                     now=_now(request))
    except DomainError as exc:
        return error_response(request, exc)  # answered, not raised: the try is committed
    ratelimit.limiter(request).give_back(hits)
    account_flows.do_delete_account(session=session, user=user, now=_now(request))
    return Response(status_code=204)
