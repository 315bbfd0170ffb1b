"""
The example as an ASGI application, for the async views:

    cd example_project && python -m uvicorn example.asgi:application
"""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

application = get_asgi_application()
if settings.DEBUG:
    # runserver serves the admin's CSS and scripts in development; uvicorn
    # does not know about Django's static files.
    application = ASGIStaticFilesHandler(application)
