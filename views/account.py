"""GET /account (your sessions), POST /account/password, POST /account/sessions/revoke."""

import tornado.web

from models.validate import MAX_ID, whole_number
from views.auth import too_many_attempts_message
from views.base import SESSION_COOKIE, PageHandler
from views.errors import Refusal
from views.forms import MESSAGES, new_password_errors


class AccountPageMixin:
    """The account page, shown by GET /account and re-shown by a password change with errors."""

    def initialize(self, users, passwords, throttle=None):
        self.users = users
        self.passwords = passwords
        self.throttle = throttle

    async def show(self, values=None, errors=None, status=200, new_token=None, new_token_name=None):
        models = self.application.models
        sessions = await models.sessions.list_for(self.current_user["id"])
        tokens = await models.tokens.list_for(self.current_user["id"])
        self.set_status(status)
        # Sessions, IPs, devices, a new token: never kept by a shared cache or the back button's disk cache.
        self.set_header("Cache-Control", "no-store")
        self.render(
            "account.html",
            sessions=sessions,
            tokens=tokens,
            new_token=new_token,
            new_token_name=new_token_name,
            values=values or {},
            field_errors={k: self.locale.translate(v) for k, v in (errors or {}).items()},
        )


class AccountHandler(AccountPageMixin, PageHandler):
    @tornado.web.authenticated
    async def get(self):
        await self.show()


class PasswordChangeHandler(AccountPageMixin, PageHandler):
    @tornado.web.authenticated
    async def post(self):
        current = self.get_body_argument("current", "", strip=False)
        password = self.get_body_argument("password", "", strip=False)
        confirm = self.get_body_argument("confirm", "", strip=False)
        me, ip = self.current_user, self.request.remote_ip
        errors = new_password_errors(password, confirm)
        # Guessing the current password here is throttled like guessing it at /login.
        attempt, wait = await self.throttle.begin(me["username"], ip)
        if not attempt:
            self.set_header("Retry-After", str(wait))
            errors = {"current": too_many_attempts_message(wait, self.locale)}
            return await self.show(errors=errors, status=429)
        user = await self.users.by_id(me["id"])
        if not current or not await self.passwords.verify(user["password_hash"], current):
            errors["current"] = MESSAGES["current_wrong"]
        else:
            await self.throttle.succeeded(me["username"], ip)
        if errors:
            return await self.show(errors=errors, status=400)
        ended = await self.users.change_password(user["id"], await self.passwords.hash(password))
        await self.log_in(user["id"])  # this browser goes on with a new session token
        revoked = max(0, ended - 1)
        message = self.locale.translate(
            "Password changed. %(count)d other session signed out.",
            "Password changed. %(count)d other sessions signed out.",
            revoked,
        )
        self.set_flash(message % {"count": revoked})
        self.redirect(self.reverse_url("account"))


class SessionRevokeHandler(PageHandler):
    """Revoke one session (`session` = its id) or all of them (`all`), this one included."""

    @tornado.web.authenticated
    async def post(self):
        sessions = self.application.models.sessions
        user = self.current_user
        if self.get_body_argument("all", ""):
            await sessions.revoke_all_for(user["id"])  # its sockets close too
            self.clear_cookie(SESSION_COOKIE)
            self.set_flash(self.locale.translate("You are signed out everywhere."))
            return self.redirect(self.reverse_url("login"))
        session_id = whole_number(self.get_body_argument("session", ""), 1, MAX_ID)
        if session_id is None or not await sessions.revoke(user["id"], session_id):
            raise Refusal(400, "No such session.")
        if session_id == user["session_id"]:
            self.clear_cookie(SESSION_COOKIE)
            self.set_flash(self.locale.translate("This session is signed out."))
            return self.redirect(self.reverse_url("login"))
        self.set_flash(self.locale.translate("Session signed out."))
        self.redirect(self.reverse_url("account"))
