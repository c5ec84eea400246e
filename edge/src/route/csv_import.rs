//! Bulk load of DIDs from CSV: a header row, then `number,target[,customer,group,tag]`.
//!
//! Every bad row is reported with its line number. Unless `skip_bad_rows` is set, one bad row
//! fails the import and nothing is applied: rows go into a table built aside, which the caller
//! swaps in only on success. A progress bar is drawn on stderr when it is a terminal, nothing
//! otherwise.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};

use control::config::MAX_DID_META_BYTES;
use indicatif::{ProgressBar, ProgressStyle};

use super::e164::E164;
use super::meta::DidMeta;
use super::table::{DidTableBuilder, TableError};
use super::targets::TargetSets;

/// Columns, in order; the first two are required.
pub const COLUMNS: [&str; 5] = ["number", "target", "customer", "group", "tag"];
/// Bad rows kept in a report (all are counted).
pub const MAX_REPORTED_BAD_ROWS: usize = 100;
/// Rows between two progress-bar updates.
const PROGRESS_EVERY_ROWS: u64 = 1 << 16;
/// Read buffer of the row counter and the CSV reader, in bytes.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Import options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Load the good rows and report the bad ones, instead of failing.
    pub skip_bad_rows: bool,
}

/// A row that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Line number in the file (1 is the header).
    pub line: u64,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows loaded.
    pub loaded: u64,
    /// Bad rows skipped (counted; the first [`MAX_REPORTED_BAD_ROWS`] are in `bad`).
    pub skipped: u64,
    /// The first bad rows.
    pub bad: Vec<BadRow>,
}

/// Why an import failed; nothing was applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The CSV syntax is broken (or reading failed mid-file).
    #[error("line {line}: {source}")]
    Csv {
        /// Line number.
        line: u64,
        /// The error.
        source: csv::Error,
    },
    /// The header row is not `number,target[,customer,group,tag]`.
    #[error("header must be number,target[,customer,group,tag], found {0:?}")]
    Header(String),
    /// Bad rows, without `skip_bad_rows`.
    #[error("{count} bad row(s), nothing applied:\n{}", rows.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n"))]
    BadRows {
        /// Bad rows counted.
        count: u64,
        /// The first of them.
        rows: Vec<BadRow>,
    },
}

/// Counts the lines of a file (to size the table before loading it).
pub fn count_lines(path: &Path) -> Result<usize, ImportError> {
    let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_err)?;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf.get(..n).unwrap_or_default().iter().filter(|&&b| b == b'\n').count();
    }
}

/// Loads a CSV file into `table` (a new table's builder, sized by [`count_lines`]).
pub fn import_file(
    path: &Path,
    targets: &TargetSets,
    table: &mut DidTableBuilder,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    import(file, len, targets, table, options)
}

/// Loads CSV from `input` (`len_bytes` sizes the progress bar) into `table`.
pub fn import<R: Read>(
    input: R,
    len_bytes: u64,
    targets: &TargetSets,
    table: &mut DidTableBuilder,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(READ_BUFFER_BYTES)
        .from_reader(input);
    let header = reader.byte_headers().map_err(|source| ImportError::Csv { line: 1, source })?.clone();
    let names: Vec<String> =
        header.iter().map(|h| String::from_utf8_lossy(h.trim_ascii()).to_ascii_lowercase()).collect();
    if names.len() < 2 || names.len() > COLUMNS.len() || names.iter().zip(COLUMNS).any(|(n, c)| n != c) {
        return Err(ImportError::Header(names.join(",")));
    }

    let progress = if io::stderr().is_terminal() {
        let bar = ProgressBar::new(len_bytes);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut report = ImportReport::default();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(source) => return Err(ImportError::Csv { line, source }),
        }
        let line = record.position().map_or(line, |p| p.line());
        match load_row(&record, targets, table) {
            Ok(()) => report.loaded += 1,
            Err(reason) => {
                report.skipped += 1;
                if report.bad.len() < MAX_REPORTED_BAD_ROWS {
                    report.bad.push(BadRow { line, reason });
                }
            }
        }
        if (report.loaded + report.skipped).is_multiple_of(PROGRESS_EVERY_ROWS) {
            progress.set_position(record.position().map_or(0, |p| p.byte()));
        }
    }
    progress.finish_and_clear();
    if report.skipped > 0 && !options.skip_bad_rows {
        return Err(ImportError::BadRows { count: report.skipped, rows: report.bad });
    }
    Ok(report)
}

fn load_row(
    record: &csv::ByteRecord,
    targets: &TargetSets,
    table: &mut DidTableBuilder,
) -> Result<(), String> {
    if record.len() < 2 || record.len() > COLUMNS.len() {
        return Err(format!("expected 2 to {} fields, found {}", COLUMNS.len(), record.len()));
    }
    let text = |i: usize| -> Result<Option<&str>, String> {
        let Some(field) = record.get(i).map(<[u8]>::trim_ascii).filter(|f| !f.is_empty()) else {
            return Ok(None);
        };
        if field.len() > MAX_DID_META_BYTES {
            return Err(format!("{} is longer than {MAX_DID_META_BYTES} bytes", COLUMNS[i]));
        }
        std::str::from_utf8(field).map(Some).map_err(|_| format!("{} is not UTF-8", COLUMNS[i]))
    };
    // Fields are trimmed here rather than by the reader, whose trimming copies every record.
    let raw = record.get(0).unwrap_or_default().trim_ascii();
    let number = raw.strip_prefix(b"+").and_then(E164::from_digits).ok_or_else(|| {
        format!("{:?} is not an E.164 number (+ then 1 to 15 digits)", String::from_utf8_lossy(raw))
    })?;
    let target = text(1)?.ok_or("target is empty")?;
    let set = targets.id(target).ok_or_else(|| format!("no target named {target:?}"))?;
    let meta = DidMeta { customer: text(2)?, group: text(3)?, tag: text(4)?, description: None };
    table.insert_new(number, set, None, &meta).map_err(|e| match e {
        TableError::Duplicate(n) => format!("{n} is listed twice"),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::table::DidTable;
    use control::config::Config;

    fn targets() -> TargetSets {
        let text = "[[target]]\nname = \"pbx1\"\nuris = [\"sip:10.0.0.1\"]\n[[target]]\nname = \"pbx2\"\nuris = [\"sip:10.0.0.2\"]\n";
        TargetSets::from_config(&Config::from_toml(text).unwrap().targets).unwrap()
    }

    fn load(csv: &str, skip_bad_rows: bool) -> (DidTable, Result<ImportReport, ImportError>) {
        let mut table = DidTableBuilder::with_capacity(16);
        let result =
            import(csv.as_bytes(), csv.len() as u64, &targets(), &mut table, ImportOptions { skip_bad_rows });
        (table.build(), result)
    }

    const GOOD: &str = "number,target,customer,group,tag\n\
        +15551230000,pbx1,acme,sales,crm-1\n\
        +442079460000, pbx2 ,\"Smith, Jones & Co\",,\n\
        +919876543210,pbx1\n";

    #[test]
    fn loads_every_column_form() {
        let (table, result) = load(GOOD, false);
        let report = result.unwrap();
        assert_eq!((report.loaded, report.skipped), (3, 0));
        let r = table.get(442079460000).unwrap();
        assert_eq!(r.set(), targets().id("pbx2").unwrap());
        table.with_meta(r.meta(), |m| {
            assert_eq!(m, DidMeta { customer: Some("Smith, Jones & Co"), ..DidMeta::default() })
        });
        table.with_meta(table.get(15551230000).unwrap().meta(), |m| {
            assert_eq!((m.customer, m.group, m.tag), (Some("acme"), Some("sales"), Some("crm-1")))
        });
        assert!(table.get(919876543210).is_some());
    }

    const BAD: &str = "number,target\n\
        +15551230000,pbx1\n\
        15551230001,pbx1\n\
        +15551230002,nowhere\n\
        +15551230000,pbx2\n\
        +15551230003\n\
        +15551230004,pbx1,a,b,c,d\n\
        +1555123000x,pbx1\n\
        +15551230005,pbx2\n";

    #[test]
    fn bad_rows_fail_the_import_with_line_numbers() {
        let (_, result) = load(BAD, false);
        let Err(ImportError::BadRows { count, rows }) = result else { panic!("{result:?}") };
        assert_eq!(count, 6);
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
        assert!(rows[0].reason.contains("not an E.164 number"), "{}", rows[0]);
        assert!(rows[1].reason.contains("no target named \"nowhere\""), "{}", rows[1]);
        assert!(rows[2].reason.contains("listed twice"), "{}", rows[2]);
        assert!(rows[3].reason.contains("found 1"), "{}", rows[3]);
        assert!(rows[4].reason.contains("found 6"), "{}", rows[4]);
    }

    #[test]
    fn skip_bad_rows_loads_the_good_ones() {
        let (table, result) = load(BAD, true);
        let report = result.unwrap();
        assert_eq!((report.loaded, report.skipped, report.bad.len()), (2, 6, 6));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(15551230000).unwrap().set(), targets().id("pbx1").unwrap());
    }

    #[test]
    fn headers_are_checked() {
        for header in
            ["target,number\n", "number\n", "number,target,customer,group,tag,extra\n", "num,target\n"]
        {
            let (_, result) = load(&format!("{header}+15551230000,pbx1\n"), true);
            assert!(matches!(result, Err(ImportError::Header(_))), "{header:?}: {result:?}");
        }
        let (table, result) = load("Number,Target\n", false);
        assert_eq!(result.unwrap().loaded, 0);
        assert!(table.is_empty());
    }

    #[test]
    fn files_are_counted_and_loaded() {
        let dir = std::env::temp_dir().join(format!("sipedge-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dids.csv");
        std::fs::write(&path, GOOD).unwrap();
        assert_eq!(count_lines(&path).unwrap(), 4);
        let mut table = DidTableBuilder::with_capacity(4);
        let report = import_file(&path, &targets(), &mut table, ImportOptions::default()).unwrap();
        assert_eq!(report.loaded, 3);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(count_lines(&path), Err(ImportError::Io { .. })));
    }
}
