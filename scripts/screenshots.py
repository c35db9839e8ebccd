"""Screenshots of the site in Debian's Chromium: a fresh server on its own database, filled by
tests/content.py, every page at phone and desktop width, in English and Chinese, light and dark.

    .venv/bin/python scripts/screenshots.py OUT_DIR [--only index,story] [--docs]

--docs also writes the README's pictures to docs/ (docs/screenshot-*.png).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import content  # noqa: E402
from tests import serverproc as sp  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}


def pages(ids):
    """name -> (path, who[, "menu"]): who is 'visitor', 'reader' or 'writer'; "menu" opens the
    header's menu first."""
    return {
        "menu": ("/", "writer", "menu"),
        "menu-visitor": ("/", "visitor", "menu"),
        "index": ("/", "visitor"),
        "index-member": ("/", "writer"),
        "index-page2": ("/?page=2", "visitor"),
        "search": ("/?q=light", "visitor"),
        "search-none": ("/?q=zebra", "visitor"),
        "story": ("/story/%d" % ids["rich"], "visitor"),
        "story-owner": ("/story/%d" % ids["rich"], "writer"),
        "story-zh": ("/story/%d" % ids["zh"], "visitor"),
        "new": ("/story/new", "writer"),
        "edit": ("/story/%d/edit" % ids["plain"], "writer"),
        "login": ("/login", "visitor"),
        "register": ("/register", "visitor"),
        "account": ("/account", "writer"),
        "chat": ("/chat", "writer"),
        "404": ("/no/such/page", "visitor"),
    }


def cookies_of(browser, base):
    return [{"name": k, "value": v, "url": base} for k, v in browser.cookies.items()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--only", default="")
    parser.add_argument("--widths", default="phone,desktop")
    parser.add_argument("--langs", default="en,zh")
    parser.add_argument("--themes", default="light,dark")
    parser.add_argument("--docs", action="store_true")
    parser.add_argument(
        "--parts", type=int, default=3, help="screens per page (0: the whole page, -N: the last N)"
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from playwright.sync_api import sync_playwright

    database = sp.database_name("shots")
    sp.drop_databases(database)
    try:
        with sp.running_server(database) as (_server, port), sync_playwright() as pw:
            base = "http://127.0.0.1:%d" % port
            ids = content.seed(port, database)
            # The browser's own words (the file input's "Choose Files") follow its --lang.
            browsers = {
                lang: pw.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--lang=" + code]
                )
                for lang, code in (("en", "en-US"), ("zh", "zh-CN"))
            }
            wanted = [n for n in args.only.split(",") if n]
            for name, (path, who, *action) in pages(ids).items():
                if wanted and name not in wanted:
                    continue
                for width_name in args.widths.split(","):
                    width, height = WIDTHS[width_name]
                    for lang in args.langs.split(","):
                        for theme in args.themes.split(","):
                            context = browsers[lang].new_context(
                                viewport={"width": width, "height": height},
                                device_scale_factor=2 if width_name == "phone" else 1,
                                locale="zh-CN" if lang == "zh" else "en-US",
                                color_scheme=theme,
                            )
                            if who != "visitor":
                                context.add_cookies(cookies_of(ids[who], base))
                            context.add_cookies(
                                [
                                    {
                                        "name": "lang",
                                        "value": "zh_CN" if lang == "zh" else "en_US",
                                        "url": base,
                                    },
                                    {"name": "theme", "value": theme, "url": base},
                                ]
                            )
                            page = context.new_page()
                            page.goto(base + path)
                            page.wait_for_load_state("networkidle")
                            if action:
                                page.locator("#site-menu summary").click()
                            stem = os.path.join(args.out, "%s-%s-%s-%s" % (name, width_name, lang, theme))
                            shoot(page, stem, width, height, args.parts)
                            context.close()
            if args.docs:
                docs(browsers, base, ids)
            for one in browsers.values():
                one.close()
    finally:
        sp.drop_databases(database)


def shoot(page, stem, width, height, parts):
    """The page as one full-page PNG (parts=0) or as its first `parts` screens, one PNG each."""
    if not parts:
        page.screenshot(path=stem + ".png", full_page=True)
        print(stem + ".png")
        return
    total = page.evaluate("document.documentElement.scrollHeight")
    screens = -(-total // height)
    # parts < 0: the last screens (the pager, the footer)
    for i in range(min(parts, screens)) if parts > 0 else range(max(0, screens + parts), screens):
        clip = {"x": 0, "y": i * height, "width": width, "height": min(height, total - i * height)}
        page.screenshot(path="%s-%d.png" % (stem, i + 1), full_page=True, clip=clip)
        print("%s-%d.png" % (stem, i + 1))


def docs(browsers, base, ids):
    """The README's pictures: the index, a story, a phone, Chinese, dark."""
    out = os.path.join(sp.PROJECT, "docs")
    story = "/story/%d" % ids["rich"]
    shots = [  # name, path, who, language, theme, viewport, scale, what to scroll to
        ("screenshot-index.png", "/", "visitor", "en", "light", (1280, 900), 1, None),
        ("screenshot-story.png", story, "visitor", "en", "light", (1280, 900), 1, None),
        ("screenshot-story-phone.png", story, "writer", "en", "light", (390, 844), 2, None),
        ("screenshot-index-zh.png", "/", "visitor", "zh", "light", (1280, 900), 1, None),
        ("screenshot-story-dark.png", story, "writer", "en", "dark", (1280, 900), 1, ".story-body h3"),
    ]
    for name, path, who, lang, theme, (width, height), scale, scroll in shots:
        context = browsers[lang].new_context(
            viewport={"width": width, "height": height}, device_scale_factor=scale
        )
        if who != "visitor":
            context.add_cookies(cookies_of(ids[who], base))
        context.add_cookies(
            [
                {"name": "lang", "value": "zh_CN" if lang == "zh" else "en_US", "url": base},
                {"name": "theme", "value": theme, "url": base},
            ]
        )
        page = context.new_page()
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        if scroll:
            page.evaluate('s => document.querySelector(s).scrollIntoView({behavior: "instant"})', scroll)
        page.screenshot(path=os.path.join(out, name))
        context.close()
        print(os.path.join(out, name))


if __name__ == "__main__":
    main()
