"""
WSGI config for portal project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'portal.settings')

application = get_wsgi_application()

# What is loaded by now (settings, URLs, models, templates) lives as long as the process: moved out of the
# collector's reach, it is not traversed again by every full collection while requests are served.
gc.freeze()
