//! A fake ComfyUI server.
