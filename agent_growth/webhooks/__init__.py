"""Webhook events for finished tasks: the outbox, delivery with retries, signing, URL guard."""
