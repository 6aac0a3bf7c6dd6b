"""The OpenAI Responses-compatible endpoint (``/api/v1``): its protocol, mapped onto the app\x27s sessions."""
