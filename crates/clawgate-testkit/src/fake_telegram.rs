//! A fake Telegram Bot API.
