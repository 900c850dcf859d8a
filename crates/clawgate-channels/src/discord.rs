//! Discord (twilight-gateway + twilight-http).
