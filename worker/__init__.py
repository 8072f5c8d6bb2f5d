"""The Celery worker: runs one end-contact task per phone number."""
