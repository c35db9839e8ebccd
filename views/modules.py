"""UI modules: fragments that repeat across templates."""

import tornado.web


class StoryCard(tornado.web.UIModule):
    """A story in a list: title link, author, date, a plain-text excerpt."""

    def render(self, story):
        return self.render_string("modules/story_card.html", story=story)


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
