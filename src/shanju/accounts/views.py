"""HTML pages of the accounts domain: sign-up, sign-in, sign-out and the account page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import mail, ratelimit
from shanju.core.config import Settings
from shanju.core.db import DbId
from shanju.core.deps import SESSION_COOKIE, CsrfChecked, CurrentUser, DbSession, Viewer
from shanju.core.errors import DomainError
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
            {"form": {"email": email, "next": next}, "flash": None, **_form_error(request, exc)},
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
