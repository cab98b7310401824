//! The pest parser generated from `grammar/tocsin.pest`. Nothing else here:
//! pest types do not leave `lang::parse`.

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/tocsin.pest"]
pub(crate) struct TocsinParser;
