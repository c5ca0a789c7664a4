"""HTML pages of the accounts domain: sign-up, sign-in (password or SMS code), sign-out, the
account page, password reset, the profile (name, email, phone) and deleting an account."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from shanju.accounts import flows as account_flows
from shanju.accounts import phones, recovery
from shanju.accounts import service as accounts
from shanju.accounts.models import CodePurpose, Role, User
from shanju.accounts.sms import SmsSender, check_phone, mask_phone
from shanju.core import mail, ratelimit
from shanju.core.config import Settings
from shanju.core.db import DbId
from shanju.core.deps import SESSION_COOKIE, CsrfChecked, CurrentUser, DbSession, Viewer
from shanju.core.errors import DomainError, NotFound
from shanju.core.i18n import N_
from shanju.core.regions import PROVINCES
from shanju.core.security import new_token, session_csrf_token
from shanju.core.web import CSRF_COOKIE, login_url, redirect, render, request_locale, tr
from shanju.gifts import flows as gift_flows

router = APIRouter()

# What a person may say they are at sign-up, with the label shown on the form.
ROLE_CHOICES = (
    (Role.DONOR.value, N_("A donor")),
    (Role.ORG_STAFF.value, N_("Staff of a charity organization")),
    (Role.ENTERPRISE_STAFF.value, N_("Staff of an enterprise")),
)
ROLE_LABELS = {
    Role.DONOR: N_("Donor"),
    Role.ORG_STAFF: N_("Charity organization staff"),
    Role.ENTERPRISE_STAFF: N_("Enterprise staff"),
    Role.REVIEWER: N_("Platform reviewer"),
    Role.ADMIN: N_("Platform administrator"),
}
# Messages shown after a redirect, chosen by key so a link cannot inject text.
FLASHES = {
    "welcome": N_("Welcome to Shanju! Your account is ready."),
    "token_revoked": N_("The token was revoked. Programs using it can no longer sign in."),
    "notifications_read": N_("All notifications are marked as read."),
    "notification_read": N_("The notification is marked as read."),
    "signed_out_everywhere": N_("You are signed out on every device."),
    "password_reset": N_("Your password is changed and every device was signed out. Sign in "
                         "with the new password."),
    "profile_saved": N_("Your profile is saved."),
    "phone_linked": N_("The phone number is added: you can sign in with an SMS code to it."),
    "phone_unlinked": N_("The phone number is removed from your account."),
    "email_changed": N_("Your email address is changed."),
    "account_deleted": N_("Your account is deleted. The records the law requires are kept "
                          "without your name or contact details."),
    "phone_welcome": N_("Welcome to Shanju! You are signed in with your phone. Choose a name "
                        "and add an email address in your profile."),
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _sign_in(request: Request, session: DbSession, user: User, next_url: str) -> Response:
    """Start a session for ``user`` (ending the browser's old one) and redirect.

    The CSRF cookie is rotated with it: the new token is bound to the new session, and the
    one the browser had before signing in no longer works (ADR 0022).
    """
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        accounts.do_end_session(session=session, token=old)
    token = accounts.do_start_session(session=session, user=user)
    response = redirect(next_url)
    secure = _settings(request).cookie_secure
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    response.set_cookie(
        CSRF_COOKIE, session_csrf_token(_settings(request).secret_key, token),
        httponly=True, samesite="lax", secure=secure,
    )
    return response


def _signed_out(request: Request, url: str) -> Response:
    """Redirect to ``url`` with the session cookie cleared and a fresh anonymous CSRF token."""
    response = redirect(url)
    secure = _settings(request).cookie_secure
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure)
    response.set_cookie(CSRF_COOKIE, new_token(nbytes=24), httponly=True, samesite="lax",
                        secure=secure)
    return response


def _now(request: Request) -> dt.datetime:
    """The accounts' clock (``app.state.clock``): tests move it to expire links and codes."""
    now: dt.datetime = request.app.state.clock()
    return now


def _deliver_mail(request: Request, session: DbSession) -> None:
    mail.deliver_after_commit(session, database=request.app.state.db,
                              mailer=request.app.state.mailer)


def _sms(request: Request) -> SmsSender:
    """The app's SMS sender, or a 404: no provider configured (production) means no phone
    sign-in at all."""
    sender: SmsSender | None = request.app.state.sms
    if sender is None:
        raise NotFound("This page does not exist.")
    return sender


def _dev_links(request: Request) -> bool:
    """Whether pages point to the development mailbox and SMS inbox."""
    return bool(_settings(request).environment == "development")


def _no_store(response: HTMLResponse) -> HTMLResponse:
    """A page with a token in its URL or a form for a secret: never cached, never referred."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _form_error(request: Request, exc: DomainError) -> dict[str, Any]:
    return {"error": tr(request, exc.message), "error_field": exc.field, "error_code": exc.code}


# --- sign-up ---------------------------------------------------------------------------------


def _signup_page(
    request: Request, form: dict[str, str], *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    return render(
        request,
        "accounts/signup.html",
        {
            "form": form,
            "provinces": PROVINCES,
            "roles": ROLE_CHOICES,
            "min_password": accounts.MIN_PASSWORD,
            **extra,
        },
        status_code=status_code,
    )


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request, viewer: Viewer, next: str = "") -> Response:
    """The sign-up form."""
    if viewer is not None:
        return redirect(accounts.safe_next_path(next, "/me"))
    return _signup_page(request, {"role": Role.DONOR.value, "next": next})


@router.post("/signup", response_class=HTMLResponse, dependencies=[CsrfChecked])
def signup(
    request: Request,
    session: DbSession,
    email: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    province: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Email a link that creates the account (or, if it exists, a notice): the same answer."""
    ratelimit.enforce(request, "signup")
    # The password is never sent back to the browser, even when the form is shown again.
    form = {"email": email, "display_name": display_name, "province": province, "role": role,
            "next": next}
    settings = _settings(request)
    try:
        normalized = accounts.do_request_signup(
            session=session, email=email, password=password, display_name=display_name,
            role=role, province=province, locale=request_locale(request), next_path=next,
            base_url=settings.base_url, platform_name=settings.platform_name,
        )
    except DomainError as exc:
        return _signup_page(request, form, status_code=exc.status_code,
                            **_form_error(request, exc))
    mail.deliver_after_commit(session, database=request.app.state.db,
                              mailer=request.app.state.mailer)
    return render(request, "accounts/signup_sent.html",
                  {"email": normalized, "next": accounts.safe_next_path(next, ""),
                   "dev_mailbox": request.app.state.settings.environment == "development"})


SignupToken = Annotated[str, Path(max_length=100)]


@router.get("/signup/confirm/{token}", response_class=HTMLResponse)
def confirm_signup_page(request: Request, session: DbSession, token: SignupToken) -> Response:
    """The emailed link: a button that creates the account."""
    pending = accounts.get_pending_signup(session=session, token=token)
    response = render(request, "accounts/signup_confirm.html",
                      {"pending": pending, "token": token})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in this page's URL
    return response


@router.post("/signup/confirm/{token}", dependencies=[CsrfChecked])
def confirm_signup(request: Request, session: DbSession, token: SignupToken) -> Response:
    """Create the account and sign it in."""
    user, next_path = accounts.do_confirm_signup(session=session, token=token)
    # Gifts given as a guest with this (now proven) email address become the account's.
    gift_flows.do_claim_guest_gifts(session=session, user=user,
                                    secret_key=request.app.state.settings.secret_key)
    return _sign_in(request, session, user,
                    accounts.safe_next_path(next_path, "/me?flash=welcome"))


# --- sign-in and sign-out --------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, viewer: Viewer, next: str = "") -> Response:
    """The sign-in form."""
    if viewer is not None:
        return redirect(accounts.safe_next_path(next, "/"))
    flash_key = request.query_params.get("flash", "")
    return render(request, "accounts/login.html", {
        "form": {"next": next},
        "flash": tr(request, FLASHES[flash_key]) if flash_key in FLASHES else None,
        "phone_sign_in": request.app.state.sms is not None,
    })


@router.post("/login", response_class=HTMLResponse, dependencies=[CsrfChecked])
def login(
    request: Request,
    session: DbSession,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the credentials and start a session."""
    # Over the limit of failed attempts: refused before the password is hashed (~0.18 s).
    hits = ratelimit.enforce(request, "password", account=accounts.normalize_email(email))
    try:
        user = accounts.authenticate(session=session, email=email, password=password)
    except DomainError as exc:
        # One message for an unknown email and a wrong password: no account discovery.
        return render(
            request,
            "accounts/login.html",
            {"form": {"email": email, "next": next}, "flash": None,
             "phone_sign_in": request.app.state.sms is not None, **_form_error(request, exc)},
            status_code=exc.status_code,
        )
    ratelimit.limiter(request).give_back(hits)  # only failures count
    return _sign_in(request, session, user, accounts.safe_next_path(next, "/"))


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, session: DbSession) -> Response:
    """End this browser's session."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.do_end_session(session=session, token=token)
    return _signed_out(request, "/")


@router.post("/me/sessions/end", dependencies=[CsrfChecked])
def sign_out_everywhere(request: Request, session: DbSession, user: CurrentUser) -> Response:
    """End every session of the person, this browser's included (API tokens stay)."""
    accounts.do_end_all_sessions(session=session, user=user, actor=user)
    return _signed_out(request, "/login?flash=signed_out_everywhere")


# --- the account page ------------------------------------------------------------------------


def _account_page(
    request: Request,
    session: DbSession,
    user: User,
    *,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    flash_key = request.query_params.get("flash", "")
    response = render(
        request,
        "accounts/me.html",
        {
            "user": user,
            "role_label": tr(request, ROLE_LABELS[user.role]),
            "notifications": accounts.render_notifications(
                accounts.list_notifications(session=session, user=user),
                locale=request_locale(request),
            ),
            "unread": accounts.count_unread_notifications(session=session, user=user),
            "tokens": accounts.list_api_tokens(session=session, user=user),
            "flash": tr(request, FLASHES[flash_key]) if flash_key in FLASHES else None,
            "safe_link": lambda link: accounts.safe_next_path(link, ""),
            "phone_masked": mask_phone(user.phone) if user.phone else "",
            "token_form": {},
            **extra,
        },
        status_code=status_code,
    )
    # The page may show a freshly created token: never keep it in a cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/me", response_class=HTMLResponse)
def account(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The signed-in person's account: profile, notifications and API tokens."""
    if viewer is None:
        return redirect(login_url("/me"))
    return _account_page(request, session, viewer)


@router.post("/me/tokens", response_class=HTMLResponse, dependencies=[CsrfChecked])
def create_token(
    request: Request,
    session: DbSession,
    user: CurrentUser,
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create a personal API token and show it once."""
    ratelimit.enforce(request, "api_token", account=user.id)
    try:
        token, plain = accounts.do_create_api_token(session=session, user=user, name=name)
    except DomainError as exc:
        return _account_page(request, session, user, status_code=exc.status_code,
                             token_form={"name": name}, **_form_error(request, exc))
    # Shown in this response only (not after a redirect): the plain token is never stored.
    return _account_page(request, session, user, new_token=plain, new_token_name=token.name)


@router.post("/me/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(token_id: DbId, session: DbSession, user: CurrentUser) -> Response:
    """Revoke one of the person's API tokens."""
    accounts.do_revoke_api_token(session=session, user=user, token_id=token_id)
    return redirect("/me?flash=token_revoked#tokens")


@router.post("/me/notifications/read", dependencies=[CsrfChecked])
def mark_all_read(session: DbSession, user: CurrentUser) -> Response:
    """Mark every notification read."""
    accounts.do_mark_notifications_read(session=session, user=user)
    return redirect("/me?flash=notifications_read#notifications")


@router.post("/me/notifications/{notification_id}/read", dependencies=[CsrfChecked])
def mark_read(notification_id: DbId, session: DbSession, user: CurrentUser) -> Response:
    """Mark one notification read."""
    accounts.do_mark_notification_read(
        session=session, user=user, notification_id=notification_id
    )
    return redirect("/me?flash=notification_read#notifications")


# --- password reset ---------------------------------------------------------------------------

ResetToken = Annotated[str, Path(max_length=100)]


@router.get("/password/forgot", response_class=HTMLResponse)
def forgot_password_page(request: Request) -> Response:
    """Ask for a password reset link."""
    return render(request, "accounts/password_forgot.html", {"form": {}})


@router.post("/password/forgot", response_class=HTMLResponse, dependencies=[CsrfChecked])
def forgot_password(request: Request, session: DbSession,
                    email: Annotated[str, Form()] = "") -> Response:
    """Email a reset link (or a notice that the address has no account): the same answer."""
    ratelimit.enforce(request, "reset", account=accounts.normalize_email(email))
    settings = _settings(request)
    try:
        normalized = recovery.do_request_password_reset(
            session=session, email=email, locale=request_locale(request),
            base_url=settings.base_url, platform_name=settings.platform_name,
            now=_now(request))
    except DomainError as exc:
        return render(request, "accounts/password_forgot.html",
                      {"form": {"email": email}, **_form_error(request, exc)},
                      status_code=exc.status_code)
    _deliver_mail(request, session)
    return render(request, "accounts/password_sent.html",
                  {"email": normalized, "dev_mailbox": _dev_links(request)})


@router.get("/password/reset/{token}", response_class=HTMLResponse)
def reset_password_page(request: Request, session: DbSession, token: ResetToken) -> Response:
    """The emailed link: a form for the new password."""
    _, user = recovery.get_password_reset(session=session, token=token, now=_now(request))
    return _no_store(render(request, "accounts/password_reset.html",
                            {"token": token, "user": user,
                             "min_password": accounts.MIN_PASSWORD}))


@router.post("/password/reset/{token}", response_class=HTMLResponse,
             dependencies=[CsrfChecked])
def reset_password(request: Request, session: DbSession, token: ResetToken,
                   password: Annotated[str, Form()] = "") -> Response:
    """Set the new password, sign out every device, and ask to sign in again."""
    settings = _settings(request)
    try:
        recovery.do_reset_password(
            session=session, token=token, password=password, locale=request_locale(request),
            base_url=settings.base_url, platform_name=settings.platform_name,
            now=_now(request))
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        _, user = recovery.get_password_reset(session=session, token=token, now=_now(request))
        return _no_store(render(request, "accounts/password_reset.html",
                                {"token": token, "user": user,
                                 "min_password": accounts.MIN_PASSWORD,
                                 **_form_error(request, exc)}, status_code=exc.status_code))
    _deliver_mail(request, session)
    # Every session ended, this browser's too (if it had one): sign in with the new password.
    return _signed_out(request, "/login?flash=password_reset")


# --- signing in with an SMS code --------------------------------------------------------------


def _phone_page(request: Request, *, step: str, phone: str = "", next: str = "",
                status_code: int = 200, **extra: Any) -> HTMLResponse:
    return _no_store(render(request, "accounts/login_phone.html", {
        "step": step, "phone": phone, "masked": mask_phone(phone) if phone else "",
        "next": next, "dev_sms": _dev_links(request), **extra}, status_code=status_code))


@router.get("/login/phone", response_class=HTMLResponse)
def phone_login_page(request: Request, viewer: Viewer, next: str = "") -> Response:
    """Sign in with a code sent to a mainland mobile number."""
    _sms(request)
    if viewer is not None:
        return redirect(accounts.safe_next_path(next, "/"))
    return _phone_page(request, step="phone", next=next)


def _send_code(request: Request, session: DbSession, *, phone: str, purpose: CodePurpose,
               user: User | None) -> None:
    """Rate-limit and send a code to ``phone`` (already checked)."""
    ratelimit.limiter(request).hit_all([
        ("sms.phone_minute", phone), ("sms.phone", phone),
        ("sms.ip", ratelimit.client_address(request))])
    phones.do_send_code(session=session, phone=phone, purpose=purpose, user=user,
                        sender=_sms(request), secret_key=_settings(request).secret_key,
                        now=_now(request))


@router.post("/login/phone/code", response_class=HTMLResponse, dependencies=[CsrfChecked])
def phone_login_code(request: Request, session: DbSession,
                     phone: Annotated[str, Form()] = "",
                     next: Annotated[str, Form()] = "") -> Response:
    """Send a code to the number (the same answer whether or not it has an account)."""
    _sms(request)
    try:
        number = check_phone(phone)
    except DomainError as exc:
        return _phone_page(request, step="phone", next=next, entered=phone,
                           status_code=exc.status_code, **_form_error(request, exc))
    _send_code(request, session, phone=number, purpose=CodePurpose.SIGN_IN, user=None)
    return _phone_page(request, step="code", phone=number, next=next)


@router.post("/login/phone", response_class=HTMLResponse, dependencies=[CsrfChecked])
def phone_login(request: Request, session: DbSession, phone: Annotated[str, Form()] = "",
                code: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "") -> Response:
    """Check the code and sign in (making the account of a new number)."""
    _sms(request)
    hits = ratelimit.enforce(request, "code")
    try:
        number = check_phone(phone)
        user, created = phones.do_sign_in_with_code(
            session=session, phone=number, code=code,
            secret_key=_settings(request).secret_key, now=_now(request))
    except DomainError as exc:
        # Rendered, not raised: the wrong try is counted and must be committed.
        step = "code" if exc.field == "code" else "phone"
        return _phone_page(request, step=step, phone=phone if step == "code" else "",
                           next=next, entered=phone, status_code=exc.status_code,
                           **_form_error(request, exc))
    ratelimit.limiter(request).give_back(hits)  # only wrong codes count
    target = "/me?flash=phone_welcome" if created else accounts.safe_next_path(next, "/")
    return _sign_in(request, session, user, target)


# --- the profile: name, email, phone -------------------------------------------------------


def _profile_page(request: Request, user: User, *, status_code: int = 200,
                  **extra: Any) -> HTMLResponse:
    flash_key = request.query_params.get("flash", "")
    return _no_store(render(request, "accounts/profile.html", {
        "user": user,
        "has_password": accounts.has_password(user),
        "phone_masked": mask_phone(user.phone) if user.phone else "",
        "phones_on": request.app.state.sms is not None,
        "flash": tr(request, FLASHES[flash_key]) if flash_key in FLASHES else None,
        "dev_mailbox": _dev_links(request), "dev_sms": _dev_links(request),
        "form": {}, **extra}, status_code=status_code))


@router.get("/me/profile", response_class=HTMLResponse)
def profile_page(request: Request, viewer: Viewer) -> Response:
    """Edit the name, the email address and the phone number of the account."""
    if viewer is None:
        return redirect(login_url("/me/profile"))
    return _profile_page(request, viewer)


@router.post("/me/profile", response_class=HTMLResponse, dependencies=[CsrfChecked])
def save_profile(request: Request, session: DbSession, user: CurrentUser,
                 display_name: Annotated[str, Form()] = "") -> Response:
    """Change the display name."""
    try:
        recovery.do_update_profile(session=session, user=user, display_name=display_name)
    except DomainError as exc:
        return _profile_page(request, user, status_code=exc.status_code,
                             form={"display_name": display_name}, **_form_error(request, exc))
    return redirect("/me/profile?flash=profile_saved")


@router.post("/me/email", response_class=HTMLResponse, dependencies=[CsrfChecked])
def change_email(request: Request, session: DbSession, user: CurrentUser,
                 new_email: Annotated[str, Form()] = "",
                 password: Annotated[str, Form()] = "") -> Response:
    """Send a confirmation link to the new address (it changes when the link is opened)."""
    ratelimit.enforce(request, "email_change", account=user.id)
    settings = _settings(request)
    try:
        normalized = recovery.do_request_email_change(
            session=session, user=user, new_email=new_email, password=password,
            locale=request_locale(request), base_url=settings.base_url,
            platform_name=settings.platform_name, now=_now(request))
    except DomainError as exc:
        return _profile_page(request, user, status_code=exc.status_code,
                             form={"new_email": new_email}, **_form_error(request, exc))
    _deliver_mail(request, session)
    return _profile_page(request, user, email_sent=normalized)


EmailToken = Annotated[str, Path(max_length=100)]


@router.get("/me/email/confirm/{token}", response_class=HTMLResponse)
def confirm_email_page(request: Request, session: DbSession, token: EmailToken) -> Response:
    """The emailed link: a button that changes the address."""
    change = recovery.get_email_change(session=session, token=token, now=_now(request))
    return _no_store(render(request, "accounts/email_confirm.html",
                            {"change": change, "token": token}))


@router.post("/me/email/confirm/{token}", dependencies=[CsrfChecked])
def confirm_email(request: Request, session: DbSession, viewer: Viewer,
                  token: EmailToken) -> Response:
    """Change the address; gifts given as a guest with it become the account's."""
    user = recovery.do_confirm_email_change(session=session, token=token, now=_now(request))
    gift_flows.do_claim_guest_gifts(session=session, user=user,
                                    secret_key=_settings(request).secret_key)
    if viewer is not None and viewer.id == user.id:
        return redirect("/me/profile?flash=email_changed")
    return redirect("/login?flash=email_changed")


@router.post("/me/phone/code", response_class=HTMLResponse, dependencies=[CsrfChecked])
def phone_link_code(request: Request, session: DbSession, user: CurrentUser,
                    phone: Annotated[str, Form()] = "") -> Response:
    """Send a code to the number to add."""
    _sms(request)
    try:
        number = check_phone(phone)
    except DomainError as exc:
        return _profile_page(request, user, status_code=exc.status_code,
                             form={"phone": phone}, **_form_error(request, exc))
    _send_code(request, session, phone=number, purpose=CodePurpose.LINK, user=user)
    return _profile_page(request, user, code_phone=number, code_masked=mask_phone(number))


@router.post("/me/phone", response_class=HTMLResponse, dependencies=[CsrfChecked])
def phone_link(request: Request, session: DbSession, user: CurrentUser,
               phone: Annotated[str, Form()] = "",
               code: Annotated[str, Form()] = "") -> Response:
    """Add the number once its code is right."""
    _sms(request)
    hits = ratelimit.enforce(request, "code")
    try:
        number = check_phone(phone)
        phones.do_link_phone(session=session, user=user, phone=number, code=code,
                             secret_key=_settings(request).secret_key, now=_now(request))
    except DomainError as exc:
        # Rendered, not raised: the wrong try is counted and must be committed.
        again = exc.field == "code"
        return _profile_page(request, user, status_code=exc.status_code,
                             code_phone=phone if again else "",
                             code_masked=mask_phone(phone) if again else "",
                             form={"phone": phone}, **_form_error(request, exc))
    ratelimit.limiter(request).give_back(hits)
    return redirect("/me/profile?flash=phone_linked")


@router.post("/me/phone/remove", response_class=HTMLResponse, dependencies=[CsrfChecked])
def phone_unlink(request: Request, session: DbSession, user: CurrentUser) -> Response:
    """Remove the number from the account."""
    try:
        phones.do_unlink_phone(session=session, user=user)
    except DomainError as exc:
        return _profile_page(request, user, status_code=exc.status_code,
                             **_form_error(request, exc))
    return redirect("/me/profile?flash=phone_unlinked")


# --- deleting the account ---------------------------------------------------------------------


def _delete_page(request: Request, user: User, *, status_code: int = 200,
                 **extra: Any) -> HTMLResponse:
    return _no_store(render(request, "accounts/delete.html", {
        "user": user, "has_password": accounts.has_password(user),
        "phone_masked": mask_phone(user.phone) if user.phone else "",
        "dev_sms": _dev_links(request), **extra}, status_code=status_code))


@router.get("/me/delete", response_class=HTMLResponse)
def delete_page(request: Request, viewer: Viewer) -> Response:
    """What deleting the account erases and keeps, and the confirmation."""
    if viewer is None:
        return redirect(login_url("/me/delete"))
    return _delete_page(request, viewer)


@router.post("/me/delete/code", response_class=HTMLResponse, dependencies=[CsrfChecked])
def delete_code(request: Request, session: DbSession, user: CurrentUser) -> Response:
    """Send the code that confirms deleting an account without a password."""
    if accounts.has_password(user) or user.phone is None:
        return redirect("/me/delete")
    _send_code(request, session, phone=user.phone, purpose=CodePurpose.DELETE, user=user)
    return _delete_page(request, user, code_sent=True)


@router.post("/me/delete", response_class=HTMLResponse, dependencies=[CsrfChecked])
def delete_account(request: Request, session: DbSession, user: CurrentUser,
                   password: Annotated[str, Form()] = "",
                   code: Annotated[str, Form()] = "") -> Response:
    """Delete the account once the password (or the code) is right; sign out everywhere."""
    action = "password" if accounts.has_password(user) else "code"
    hits = ratelimit.enforce(request, action,
                             account=accounts.normalize_email(user.email or "")
                             if action == "password" else None)
    try:
        account_flows.check_deletion(session=session, user=user, password=password, code=code,
                                     secret_key=_settings(request).secret_key,
                                     now=_now(request))
    except DomainError as exc:
        # Rendered, not raised: a wrong code's try must be committed.
        return _delete_page(request, user, status_code=exc.status_code,
                            code_sent=action == "code", **_form_error(request, exc))
    ratelimit.limiter(request).give_back(hits)
    account_flows.do_delete_account(session=session, user=user, now=_now(request))
    return _signed_out(request, "/login?flash=account_deleted")
