//! lbd's event loop (filled in by the next step).
