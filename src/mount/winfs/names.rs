//! Windows naming rules over names written by any client: a reversible mapping between a clear name (as
//! stored in the folder metadata, any UTF-8 without `/`, `\` or NUL) and the name Windows shows, and the
//! case-insensitive lookup of a folder whose entries may differ only in case.
//!
//! The mapping (docs/FORMAT.md, "Names on Windows", is the reference):
//! - a character Windows forbids in names (`< > : " | ? *` and U+0001–U+001F) becomes the private-use
//!   character U+F000 + its code (`?` → U+F03F), as Cygwin, WSL and macOS' SMB client do;
//! - trailing dots and spaces, which Windows strips, become U+F02E and U+F020 the same way;
//! - a reserved device name (CON, PRN, AUX, NUL, COM0–9, LPT0–9, COM¹²³, LPT¹²³, CONIN$, CONOUT$, with or
//!   without an extension, any case) gets the escape U+F000 before its second character (`CON.txt` →
//!   `C\u{F000}ON.txt`);
//! - a clear name that itself holds a character of U+F000–U+F07F gets the escape U+F000 before it, so the
//!   mapping stays one to one;
//! - of entries whose mapped names are equal ignoring case, the first in byte order of the clear name keeps
//!   its name and the n-th (n ≥ 2) gets U+F07F and n before its extension (`README` and `Readme`: `README`
//!   and `Readme\u{F07F}2`), so that both stay reachable on a case-insensitive volume.
//!
//! [`to_clear`] undoes all of it: U+F000 followed by any character is that character, U+F07F followed by
//! digits is dropped, U+F000 + c is c for the mapped characters. A name typed on Windows that holds none of
//! U+F000–U+F07F is its own clear name.

use std::cmp::Ordering;

use zeroize::Zeroizing;

use crate::vfs::{Attributes, DirEntry};

/// Escape: the character after it is taken literally.
pub const ESCAPE: char = '\u{F000}';
/// Marks the n-th of names equal ignoring case (followed by n in decimal).
pub const CASE_TWIN: char = '\u{F07F}';

const PRIVATE_FIRST: u32 = 0xF000;
const PRIVATE_LAST: u32 = 0xF07F;

/// Why a Windows name has no clear name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not UTF-16 that makes Unicode (an unpaired surrogate).
    #[error("the name is not valid UTF-16")]
    NotUnicode,
    /// An escape or case mark with nothing (or no number) after it.
    #[error("the name ends in an escape or holds a case mark without a number")]
    BadEscape,
    /// Empty, `.`, `..`, or a path separator inside one name.
    #[error("not a name")]
    Invalid,
}

fn forbidden_on_windows(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\\') || ('\u{1}'..='\u{1f}').contains(&c)
}

fn is_private(c: char) -> bool {
    (PRIVATE_FIRST..=PRIVATE_LAST).contains(&(c as u32))
}

fn private(c: char) -> char {
    char::from_u32(PRIVATE_FIRST + c as u32).expect("ASCII plus U+F000 is a character")
}

/// The character a private-use character stands for, if the mapping makes it.
fn unmapped(c: char) -> Option<char> {
    let code = (c as u32).checked_sub(PRIVATE_FIRST)?;
    let original = char::from_u32(code).filter(|_| code < 0x80)?;
    (forbidden_on_windows(original) || original == '.' || original == ' ').then_some(original)
}

/// Whether Windows treats `name` as a device: its part before the first dot, without trailing spaces, is a
/// reserved name (any case).
pub fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim_end_matches(' ');
    const RESERVED: [&str; 6] = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];
    let upper = stem.to_uppercase();
    if RESERVED.contains(&upper.as_str()) {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && rest.len() == 1
        && (rest[0].is_ascii_digit() || matches!(rest[0], '¹' | '²' | '³'))
}

/// The name Windows shows for the clear name `clear` (before case twins are told apart).
pub fn to_windows(clear: &str) -> String {
    let chars: Vec<char> = clear.chars().collect();
    let trailing_from = chars.iter().rposition(|c| *c != '.' && *c != ' ').map_or(0, |last| last + 1);
    let reserved = is_reserved(clear);
    let mut windows = String::with_capacity(clear.len() + 4);
    for (index, &c) in chars.iter().enumerate() {
        if reserved && index == 1 {
            windows.push(ESCAPE);
        }
        if is_private(c) {
            windows.push(ESCAPE);
            windows.push(c);
        } else if forbidden_on_windows(c) || (index >= trailing_from && (c == '.' || c == ' ')) {
            windows.push(private(c));
        } else {
            windows.push(c);
        }
    }
    windows
}

/// The clear name of the Windows name `windows` (one path component, UTF-16 as Windows passes it).
pub fn to_clear(windows: &[u16]) -> Result<Zeroizing<String>, NameError> {
    let text = Zeroizing::new(String::from_utf16(windows).map_err(|_| NameError::NotUnicode)?);
    let mut clear = Zeroizing::new(String::with_capacity(text.len()));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ESCAPE {
            clear.push(chars.next().ok_or(NameError::BadEscape)?);
        } else if c == CASE_TWIN {
            if !chars.peek().is_some_and(char::is_ascii_digit) {
                return Err(NameError::BadEscape);
            }
            while chars.next_if(char::is_ascii_digit).is_some() {}
        } else {
            clear.push(unmapped(c).unwrap_or(c));
        }
    }
    if clear.is_empty() || *clear == "." || *clear == ".." || clear.contains(['/', '\\', '\0']) {
        return Err(NameError::Invalid);
    }
    Ok(clear)
}

/// `name` with every character upper-cased the way Windows compares names on a case-insensitive volume
/// (one character for one: characters whose upper case is longer keep their case).
pub fn fold_case(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None) => single,
                _ => c,
            }
        })
        .collect()
}

/// Compares names the way a directory listing is ordered and resumed: by UTF-16 code units.
pub fn compare_utf16(left: &[u16], right: &[u16]) -> Ordering {
    left.cmp(right)
}

/// One entry of a folder as Windows sees it.
#[derive(Debug, Clone)]
pub struct WindowsEntry {
    /// The name Windows shows (UTF-16).
    pub windows_name: Vec<u16>,
    /// The name in the folder metadata.
    pub clear_name: Zeroizing<String>,
    /// The engine's attributes of the entry.
    pub attributes: Attributes,
    /// The Windows name upper-cased ([`fold_case`]), for lookups.
    folded: String,
}

impl Drop for WindowsEntry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.windows_name);
        zeroize::Zeroize::zeroize(&mut self.folded);
    }
}

/// The entries of one folder under their Windows names, ordered by name (UTF-16 code units), with the
/// names equal ignoring case told apart.
#[derive(Debug, Default)]
pub struct NameTable {
    entries: Vec<WindowsEntry>,
    /// Indexes into `entries`, ordered by folded name.
    by_folded: Vec<usize>,
}

impl NameTable {
    /// The table of a folder listing.
    pub fn new(listing: Vec<DirEntry>) -> Self {
        let mut named: Vec<(String, DirEntry)> =
            listing.into_iter().map(|entry| (to_windows(&entry.name), entry)).collect();
        // Twins: the same folded name; the first in byte order of the clear name keeps its name.
        named.sort_by(|(left_windows, left), (right_windows, right)| {
            fold_case(left_windows).cmp(&fold_case(right_windows)).then_with(|| left.name.cmp(&right.name))
        });
        let mut entries = Vec::with_capacity(named.len());
        let mut previous_fold: Option<Zeroizing<String>> = None;
        let mut twin = 1;
        for (mut windows, entry) in named {
            let fold = Zeroizing::new(fold_case(&windows));
            if previous_fold.as_ref().map(|previous| previous.as_str()) == Some(fold.as_str()) {
                twin += 1;
                mark_twin(&mut windows, twin);
            } else {
                twin = 1;
                previous_fold = Some(fold);
            }
            let windows_name: Vec<u16> = windows.encode_utf16().collect();
            let folded = fold_case(&windows);
            zeroize::Zeroize::zeroize(&mut windows);
            entries.push(WindowsEntry {
                windows_name,
                clear_name: entry.name.clone(),
                attributes: entry.attributes,
                folded,
            });
        }
        entries.sort_by(|left, right| compare_utf16(&left.windows_name, &right.windows_name));
        let mut by_folded: Vec<usize> = (0..entries.len()).collect();
        by_folded.sort_by(|left, right| entries[*left].folded.cmp(&entries[*right].folded));
        Self { entries, by_folded }
    }

    /// The entry Windows means by `windows_name` (compared ignoring case).
    pub fn find(&self, windows_name: &[u16]) -> Option<&WindowsEntry> {
        let text = Zeroizing::new(String::from_utf16(windows_name).ok()?);
        let folded = Zeroizing::new(fold_case(&text));
        let at = self.by_folded.binary_search_by(|index| self.entries[*index].folded.as_str().cmp(&folded)).ok()?;
        Some(&self.entries[self.by_folded[at]])
    }

    /// The entries, ordered by Windows name.
    pub fn entries(&self) -> &[WindowsEntry] {
        &self.entries
    }

    /// The entries after `marker` (the last name a previous listing returned), in order.
    pub fn after<'t>(&'t self, marker: &[u16]) -> impl Iterator<Item = &'t WindowsEntry> + 't {
        let start =
            self.entries.partition_point(|entry| compare_utf16(&entry.windows_name, marker) != Ordering::Greater);
        self.entries[start..].iter()
    }
}

/// Inserts the case mark and `number` before the extension of `windows` (or at its end).
fn mark_twin(windows: &mut String, number: usize) {
    let at = match windows.rfind('.') {
        Some(dot) if dot > 0 => dot,
        _ => windows.len(),
    };
    windows.insert_str(at, &format!("{CASE_TWIN}{number}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    fn clear(windows: &str) -> Result<String, NameError> {
        to_clear(&utf16(windows)).map(|name| name.to_string())
    }

    /// The naming-rules table: clear name, the name Windows shows.
    const TABLE: &[(&str, &str)] = &[
        ("report.txt", "report.txt"),
        ("a:b", "a\u{F03A}b"),
        ("what?", "what\u{F03F}"),
        ("<>:\"|?*", "\u{F03C}\u{F03E}\u{F03A}\u{F022}\u{F07C}\u{F03F}\u{F02A}"),
        ("tab\there", "tab\u{F009}here"),
        ("trailing.", "trailing\u{F02E}"),
        ("trailing ", "trailing\u{F020}"),
        ("dots. .", "dots\u{F02E}\u{F020}\u{F02E}"),
        ("...", "\u{F02E}\u{F02E}\u{F02E}"),
        ("a. b", "a. b"),
        (" leading", " leading"),
        ("CON", "C\u{F000}ON"),
        ("con", "c\u{F000}on"),
        ("NUL.txt", "N\u{F000}UL.txt"),
        ("nul.tar.gz", "n\u{F000}ul.tar.gz"),
        ("AUX .log", "A\u{F000}UX .log"),
        ("COM1", "C\u{F000}OM1"),
        ("lpt9.doc", "l\u{F000}pt9.doc"),
        ("COM¹", "C\u{F000}OM¹"),
        ("CONOUT$", "C\u{F000}ONOUT$"),
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("NULL.txt", "NULL.txt"),
        ("x\u{F03F}", "x\u{F000}\u{F03F}"),
        ("x\u{F000}", "x\u{F000}\u{F000}"),
        ("x\u{F07F}2", "x\u{F000}\u{F07F}2"),
        ("x\u{F080}", "x\u{F080}"),
        ("ünïcödé 文件.txt", "ünïcödé 文件.txt"),
    ];

    #[test]
    fn the_naming_table_maps_both_ways() {
        for (clear_name, windows_name) in TABLE {
            assert_eq!(to_windows(clear_name), *windows_name, "to Windows: {clear_name:?}");
            assert_eq!(clear(windows_name).as_deref(), Ok(*clear_name), "back: {windows_name:?}");
        }
    }

    #[test]
    fn names_typed_on_windows_are_their_own_clear_names() {
        for name in ["notes.txt", "Q3 report (final).docx", "~$report.docx", "~WRL0001.tmp", "a b", ".git"] {
            assert_eq!(clear(name).as_deref(), Ok(name));
            assert_eq!(to_windows(name), name);
        }
    }

    #[test]
    fn mapped_characters_typed_on_windows_make_the_forbidden_ones() {
        assert_eq!(clear("a\u{F03F}").as_deref(), Ok("a?"));
        assert_eq!(clear("Readme\u{F07F}2.md").as_deref(), Ok("Readme.md"));
        assert_eq!(clear("C\u{F000}ON").as_deref(), Ok("CON"));
    }

    #[test]
    fn bad_windows_names_are_refused() {
        assert_eq!(clear("end\u{F000}"), Err(NameError::BadEscape));
        assert_eq!(clear("twin\u{F07F}"), Err(NameError::BadEscape));
        assert_eq!(clear("twin\u{F07F}x"), Err(NameError::BadEscape));
        assert_eq!(clear(""), Err(NameError::Invalid));
        assert_eq!(clear(".."), Err(NameError::Invalid));
        assert_eq!(clear("\u{F02E}"), Err(NameError::Invalid));
        assert_eq!(to_clear(&[0xD800]).map(|_| ()), Err(NameError::NotUnicode));
    }

    #[test]
    fn windows_names_hold_nothing_windows_refuses() {
        for (clear_name, _) in TABLE {
            let windows = to_windows(clear_name);
            assert!(!windows.contains(|c: char| forbidden_on_windows(c)), "{windows:?}");
            assert!(!windows.ends_with('.') && !windows.ends_with(' '), "{windows:?}");
            assert!(!is_reserved(&windows), "{windows:?}");
        }
    }

    fn entry(name: &str, ino: u64) -> DirEntry {
        let now = std::time::SystemTime::now();
        DirEntry {
            name: Zeroizing::new(name.to_owned()),
            attributes: Attributes { ino, kind: crate::vfs::NodeType::File, size: 0, mtime: now, ctime: now, links: 1 },
        }
    }

    #[test]
    fn case_twins_both_stay_reachable() {
        let table = NameTable::new(vec![entry("Readme.md", 2), entry("README.md", 3), entry("readme.md", 4)]);
        let names: Vec<String> = table.entries().iter().map(|e| String::from_utf16(&e.windows_name).unwrap()).collect();
        assert_eq!(names, ["README.md", "Readme\u{F07F}2.md", "readme\u{F07F}3.md"]);
        // Any case reaches the first twin; the marked names reach the others.
        assert_eq!(table.find(&utf16("readme.MD")).unwrap().attributes.ino, 3);
        assert_eq!(table.find(&utf16("README\u{F07F}2.MD")).unwrap().attributes.ino, 2);
        assert_eq!(table.find(&utf16("readme\u{F07F}3.md")).unwrap().attributes.ino, 4);
        for entry in table.entries() {
            assert_eq!(*to_clear(&entry.windows_name).unwrap(), *entry.clear_name);
        }
    }

    #[test]
    fn a_listing_resumes_after_its_marker() {
        let table = NameTable::new(vec![entry("b", 2), entry("a", 3), entry("c", 4)]);
        let after: Vec<u64> = table.after(&utf16("a")).map(|e| e.attributes.ino).collect();
        assert_eq!(after, [2, 4]);
        let after: Vec<u64> = table.after(&utf16("bb")).map(|e| e.attributes.ino).collect();
        assert_eq!(after, [4]);
        assert_eq!(table.after(&utf16("c")).count(), 0);
    }

    proptest::proptest! {
        #[test]
        fn every_clear_name_comes_back(name in "[a-zA-Z0-9 .:?*<>|\"\\x01\u{F000}-\u{F080}é文]{1,24}") {
            proptest::prop_assume!(name != "." && name != "..");
            let windows = to_windows(&name);
            let back = clear(&windows);
            proptest::prop_assert_eq!(back.as_deref(), Ok(name.as_str()));
            proptest::prop_assert!(!is_reserved(&windows));
        }
    }
}
