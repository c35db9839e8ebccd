"""POST /account/tokens (create a personal API token, shown once) and /account/tokens/revoke."""

import tornado.web

from models.tokens import NAME_MAX, TooManyTokens
from models.validate import MAX_ID, whole_number
from views.account import AccountPageMixin
from views.base import PageHandler
from views.errors import Refusal
from views.forms import token_name_errors


class TokenCreateHandler(AccountPageMixin, PageHandler):
    @tornado.web.authenticated
    async def post(self):
        name = " ".join(self.get_body_argument("name", "").split())
        errors = token_name_errors(name)
        if errors:
            return await self.show(values={"name": name}, errors=errors, status=400)
        try:
            token = await self.application.models.tokens.create(self.current_user["id"], name[:NAME_MAX])
        except TooManyTokens:
            errors = {"name": self.locale.translate("You have 20 tokens: revoke one first.")}
            return await self.show(values={"name": name}, errors=errors, status=400)
        await self.show(new_token=token, new_token_name=name, status=201)


class TokenRevokeHandler(PageHandler):
    @tornado.web.authenticated
    async def post(self):
        token_id = whole_number(self.get_body_argument("token", ""), 1, MAX_ID)
        if token_id is None or not await self.application.models.tokens.revoke(
            self.current_user["id"], token_id
        ):
            raise Refusal(400, "No such token.")
        self.set_flash(self.locale.translate("Token revoked: it no longer works."))
        self.redirect(self.reverse_url("account"))
