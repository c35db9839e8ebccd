"""Register, log in, log out."""

from models.users import TooManyRegistrations, UsernameTaken
from views import i18n
from views.base import SESSION_COOKIE, PageHandler
from views.forms import MESSAGES, registration_errors


class RegisterHandler(PageHandler):
    def initialize(self, users, passwords):
        self.users = users
        self.passwords = passwords

    def get(self):
        if self.current_user:
            return self.redirect(self.reverse_url("index"))
        self.render("register.html")

    async def post(self):
        username = self.get_body_argument("username", "")
        password = self.get_body_argument("password", "", strip=False)
        confirm = self.get_body_argument("confirm", "", strip=False)
        values = {"username": username}
        errors = registration_errors(username, password, confirm)
        if errors:
            return self.render_form("register.html", values, errors)
        ip = self.request.remote_ip
        limit = self.settings["registrations_per_ip_hour"]
        # Checked before hashing too (every registration costs an argon2 hash); the insert checks
        # again, atomically, for requests that arrive together.
        if await self.users.registered_from(ip) >= limit:
            return self.too_many(values)
        if await self.users.by_username(username):
            errors["username"] = MESSAGES["username_taken"]
            return self.render_form("register.html", values, errors)
        try:
            password_hash = await self.passwords.hash(password)
            user_id = await self.users.create(username, password_hash, ip, per_ip_hour=limit)
        except TooManyRegistrations:
            return self.too_many(values)
        except UsernameTaken:  # taken between the check and the insert
            errors["username"] = MESSAGES["username_taken"]
            return self.render_form("register.html", values, errors)
        await self.log_in(user_id)
        if i18n.chosen(self):  # a visitor who picked a language keeps it as a member
            await self.users.set_locale(user_id, i18n.chosen(self))
        _ = self.locale.translate
        self.set_flash(_("Welcome, %(name)s! Your account is ready.") % {"name": username})
        self.redirect(self.reverse_url("index"))

    def too_many(self, values):
        self.set_header("Retry-After", "3600")
        _ = self.locale.translate
        errors = {"form": _("Too many accounts were made from your address. Try again in an hour.")}
        self.render_form("register.html", values, errors, status=429)


class LoginHandler(PageHandler):
    def initialize(self, users, passwords, throttle):
        self.users = users
        self.passwords = passwords
        self.throttle = throttle

    def too_many_attempts(self, wait, values):
        self.set_header("Retry-After", str(wait))
        errors = {"form": too_many_attempts_message(wait, self.locale)}
        self.render_form("login.html", values, errors, status=429)

    def get(self):
        if self.current_user:
            return self.redirect(self.next_url())
        self.render("login.html", values={"next": self.get_query_argument("next", "")})

    async def post(self):
        username = self.get_body_argument("username", "")
        password = self.get_body_argument("password", "", strip=False)
        values = {"username": username, "next": self.get_body_argument("next", "")}
        errors = {}
        if not username:
            errors["username"] = MESSAGES["login_username_empty"]
        if not password:
            errors["password"] = MESSAGES["login_password_empty"]
        if errors:
            return self.render_form("login.html", values, errors)
        ip = self.request.remote_ip
        # The attempt is recorded and the throttle checked before hashing: a flood costs no CPU.
        attempt, wait = await self.throttle.begin(username, ip)
        if not attempt:
            return self.too_many_attempts(wait, values)
        user = await self.users.by_username(username)
        ok = await self.passwords.verify(user["password_hash"] if user else None, password)
        if not ok:
            errors["form"] = MESSAGES["login_failed"]
            return self.render_form("login.html", values, errors)
        await self.throttle.succeeded(username, ip)
        await self.log_in(user["id"])
        i18n.adopt(self, user["locale"])
        self.set_flash(self.locale.translate("Signed in as %(name)s.") % {"name": user["username"]})
        self.redirect(self.next_url())


def too_many_attempts_message(wait, locale):
    minutes = (wait + 59) // 60
    return locale.translate(
        "Too many failed attempts. Try again in %(minutes)d minute.",
        "Too many failed attempts. Try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


class LogoutHandler(PageHandler):
    async def post(self):
        token = self.session_token()
        if token:
            await self.application.models.sessions.delete_token(token)  # its sockets close too
        self.clear_cookie(SESSION_COOKIE)
        self.set_flash(self.locale.translate("You are signed out."))
        self.redirect(self.reverse_url("index"))
