//! The rules front end: text → [`Program`]. Reads rule files and nothing
//! else; knows nothing of events, tokio or the engine.
//!
//! `grammar` (pest) → `parse` (AST with spans) → `validate` (names, kinds,
//! all errors collected) → `program` (what the engine runs). Diagnostics are
//! rendered only in `diagnostic`.

pub mod ast;
pub mod diagnostic;
mod grammar;
pub mod parse;
pub mod program;
pub mod span;
pub mod template;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Severity};
pub use parse::duration_ms;
pub use program::Program;
pub use span::SourceMap;
pub use validate::Options;

/// The outcome of loading a rules location.
#[derive(Debug)]
pub struct Loaded {
    pub program: Program,
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every error as `file:line:col: error: message`, one per entry.
    pub fn error_lines(&self) -> Vec<String> {
        self.diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.headline(&self.sources))
            .collect()
    }

    /// All diagnostics rendered with source lines and carets.
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(&self.sources))
            .collect()
    }
}

/// A rules location that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// The `*.rules` files of a location: the file itself, or a directory's
/// `*.rules` files in file-name order.
pub fn rule_files(location: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let err = |source| ReadError {
        path: location.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(location).map_err(err)?;
    if !meta.is_dir() {
        return Ok(vec![location.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(location)
        .map_err(err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules") && p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Loads several locations as one rule set (rule order = location order,
/// then file-name order within a directory).
pub fn load_locations(locations: &[PathBuf], opts: &Options) -> Result<Loaded, ReadError> {
    let mut texts = Vec::new();
    for loc in locations {
        for f in rule_files(loc)? {
            let text = std::fs::read_to_string(&f).map_err(|source| ReadError {
                path: f.display().to_string(),
                source,
            })?;
            texts.push((f.display().to_string(), text));
        }
    }
    Ok(load_texts(texts, opts))
}

/// Loads one location.
pub fn load(location: &Path, opts: &Options) -> Result<Loaded, ReadError> {
    load_locations(&[location.to_path_buf()], opts)
}

/// Stack for parsing and validation: both recurse on the input's nesting,
/// which a hostile or generated file can make very deep.
const FRONT_END_STACK: usize = 256 << 20;

/// Loads rule texts given as `(name, text)` pairs, in order.
pub fn load_texts(texts: Vec<(String, String)>, opts: &Options) -> Loaded {
    let spawned = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("tocsin-rules".into())
            .stack_size(FRONT_END_STACK)
            .spawn_scoped(s, || load_texts_here(texts.clone(), opts))
            .ok()
            .and_then(|h| h.join().ok())
    });
    // Without a thread (resource limits), load on this one.
    spawned.unwrap_or_else(|| load_texts_here(texts, opts))
}

fn load_texts_here(texts: Vec<(String, String)>, opts: &Options) -> Loaded {
    let mut sources = SourceMap::default();
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    for (name, text) in texts {
        let id = sources.add(name, text);
        let (decls, diags) = parse::parse_file(id, &sources.file(id).text);
        diagnostics.extend(diags);
        files.push((id, decls));
    }
    let (mut program, diags) = validate::compile(&sources, &files, opts);
    program.texts = sources
        .files()
        .map(|(_, f)| (f.name.clone(), f.text.clone()))
        .collect();
    diagnostics.extend(diags);
    diagnostics.sort_by_key(|d| (d.span.file.0, d.span.start));
    Loaded {
        program,
        sources,
        diagnostics,
    }
}
