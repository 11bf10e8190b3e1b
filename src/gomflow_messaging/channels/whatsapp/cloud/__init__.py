"""WhatsApp through Meta's own Cloud API (``WHATSAPP_PROVIDER=cloud``): no middleman fee.

Beside Twilio's modules in the ``whatsapp`` package and never importing them (an
import-linter contract says so); what both share is in ``window.py`` and ``render.py``.
"""
