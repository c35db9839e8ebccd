"""UI modules: fragments that repeat across templates."""

import tornado.web


class StoryCards(tornado.web.UIModule):
    """Stories in a list: title link, author, date, a plain-text excerpt. One render for the whole
    list (a render per card cost a template namespace each: 13 % of the index's time)."""

    def render(self, stories):
        return self.render_string("modules/story_cards.html", stories=stories)


class Meta(tornado.web.UIModule):
    """The page's description and its OpenGraph and Twitter card tags: the site's by default, a
    story's own (title, excerpt, author) on its page."""

    def render(self, title=None, description=None, story=None):
        return self.render_string(
            "modules/meta.html",
            title=title,
            description=description,
            story=story,
            url=self.request.full_url(),
        )


class RevokeForm(tornado.web.UIModule):
    """A one-button POST form (XSRF included) that ends one thing: a session, an API token."""

    def render(self, action, name, value, label):
        return self.render_string(
            "modules/revoke_form.html", action=action, name=name, value=value, label=label
        )


class Field(tornado.web.UIModule):
    """A labelled input with the user's value kept and its error message beside it."""

    def render(self, name, label, values, errors, kind="text", **attrs):
        return self.render_string(
            "modules/field.html",
            name=name,
            label=label,
            kind=kind,
            value=values.get(name, "") if kind != "password" else "",
            error=errors.get(name),
            attrs=attrs,
        )
