"""The webhooks adapter: signing and sending events to merchants' URLs, and the URL checks."""
