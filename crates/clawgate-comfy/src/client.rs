//! Native ComfyUI client.
