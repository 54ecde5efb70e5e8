//! `pattern-lang`: the Strix rule language.
//!
//! Input is the text of a `.cep` file; [`parse_file`] turns it into a syntax tree ([`ast::File`])
//! whose nodes carry byte [`Span`]s, and reports the first syntax error as a [`Diagnostic`] that
//! renders rustc-style (`file:line:col` and a caret line). The next stage, lowering, resolves the
//! tree's names against the declared event schemas and builds the typed program.
//!
//! ```
//! use pattern_lang::{Diagnostic, parse_file};
//!
//! let file = parse_file("event Trade { price: f64 }\nrule big pattern t define t as price > 100")?;
//! assert_eq!(file.items.len(), 2);
//!
//! let src = "event Trade { price: f64; }";
//! if let Err(err) = parse_file(src) {
//!     assert!(err.render("t.cep", src).contains("t.cep:1:25"));
//! }
//! # Ok::<(), Diagnostic>(())
//! ```

pub mod ast;
pub mod diag;
pub mod lower;
pub mod params;
pub mod parse;

pub use diag::{Diagnostic, Span};
pub use lower::{compile, compile_with_params, lower_file};
pub use params::{ParamDecl, ParamValue};
pub use parse::{params, parse_file, parse_file_with_params};
