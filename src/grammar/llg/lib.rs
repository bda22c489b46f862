// lib.rs — re-exports llguidance so that its extern "C" functions (llguidance.h) end up in the static library
// tandem links; nothing of tandem's own lives here.
pub use llguidance::*;
