"""POST /lang: the language switcher in the header (a plain form, works without JavaScript)."""

from views.base import PageHandler, is_local_path
from views.errors import Refusal
from views.i18n import LANG_COOKIE, LOCALES


class LangHandler(PageHandler):
    """POST /lang (lang=en_US|zh_CN, back=/the/same/page): a cookie for everyone, and for a member the
    users row as well, so the choice follows them to other browsers and survives logging out."""

    async def post(self):
        code = self.get_body_argument("lang", "")
        if code not in LOCALES:
            raise Refusal(400, "Unknown language.")
        self.set_cookie(LANG_COOKIE, code, expires_days=365, samesite="Lax")
        if self.current_user:
            await self.application.models.users.set_locale(self.current_user["id"], code)
        back = self.get_body_argument("back", "")
        self.redirect(back if is_local_path(back) else self.reverse_url("index"))
