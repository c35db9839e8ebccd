"""Once an hour in every process: expired sessions, old login failures, registration and story
creation records, and upload files a crash left behind (tests/test_database.py, tests/test_uploads.py)."""

import logging

import tornado.ioloop

from models.db import DatabaseUnavailable

log = logging.getLogger("storyhouse")


async def housekeeping(models):
    try:
        sessions = await models.sessions.delete_expired()
        failures = await models.throttle.delete_old()
        await models.users.delete_old_registration_ips()
        await models.stories.delete_old_creations()  # the stories-per-hour window has passed
        swept = await models.attachments.sweep()
    except DatabaseUnavailable:
        return  # next hour, then
    if any(swept):
        log.info("housekeeping: %d temporary upload files and %d files without a row removed", *swept)
    if sessions or failures:
        log.info("housekeeping: %d expired sessions, %d old login failures removed", sessions, failures)


def start_housekeeping(models):
    """The hourly job, started; stop() it at shutdown."""
    job = tornado.ioloop.PeriodicCallback(lambda: housekeeping(models), 3600 * 1000, jitter=0.1)
    job.start()
    return job
