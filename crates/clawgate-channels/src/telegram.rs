//! Telegram Bot API (long polling and webhooks).
