"""
The example as a WSGI application, for WSGI servers other than runserver:

    cd example_project && gunicorn example.wsgi:application
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

application = get_wsgi_application()
