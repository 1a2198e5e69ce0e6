//! The Windows adapter's logic on Linux: the call sequences WinFsp makes for Explorer, Notepad and Office
//! replayed through the same [`WinFs`] methods the WinFsp adapter (platform/windows) calls, over both vault
//! formats (a Nextcloud folder on a real `cloakfs serve`, run in this process; a Cryptomator vault in a
//! local folder); every sequence is checked by a second device reading what storage holds.
//!
//! The sequences follow what WinFsp passes for the Win32 calls these programs make (CreateFileW with its
//! disposition becomes Create, or Open then Overwrite; SetFileInformationByHandle becomes SetBasicInfo,
//! SetFileSize, SetDelete or Rename; CloseHandle becomes Cleanup, with the delete flag on the last handle
//! of a file marked for deletion, then Close).

#[path = "common/dav.rs"]
mod dav;
#[path = "common/engine.rs"]
mod engine;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/server.rs"]
mod server;

use cloakfs::mount::winfs::info::{FILE_ATTRIBUTE_ARCHIVE, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_HIDDEN};
use cloakfs::mount::winfs::{
    FileInformation, NtStatus, WinFs, CLEANUP_DELETE, CLEANUP_SET_ARCHIVE_BIT, CLEANUP_SET_LAST_WRITE_TIME, DELETE,
    FILE_APPEND_DATA, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_NON_DIRECTORY_FILE, FILE_READ_ATTRIBUTES,
    FILE_READ_DATA, FILE_WRITE_DATA,
};
use cloakfs::vfs::{Engine, Vfs};
use engine::Devices;

/// The Windows side of an engine of format `D`.
type Fs<D> = WinFs<Vfs<<D as Devices>::Format>>;

fn w(path: &str) -> Vec<u16> {
    path.encode_utf16().collect()
}

/// The Windows side of device `device` on the case folder `case`.
async fn windows<D: Devices>(devices: &D, device: &str, case: &str) -> Fs<D> {
    WinFs::new(devices.engine(device, case).await)
}

/// A new case folder and the laptop's Windows side on it.
async fn new_case<D: Devices>(devices: &D, case: &str) -> Fs<D> {
    devices.new_case(case).await;
    windows(devices, "laptop", case).await
}

const READ: u32 = FILE_READ_DATA | FILE_READ_ATTRIBUTES;
const WRITE: u32 = FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_READ_ATTRIBUTES;

/// A 2000-01-01 FILETIME, as a copied file carries from its source.
const Y2K: u64 = 125_911_584_000_000_000;

/// Explorer copying a file in (CopyFileExW): CREATE_NEW, the size set first, 64 KiB writes, the source's
/// times, CloseHandle.
async fn explorer_copy<E: Engine>(fs: &WinFs<E>, path: &str, content: &[u8]) -> FileInformation {
    assert_eq!(fs.get_security_by_name(&w(path)).await.unwrap_err(), NtStatus::OBJECT_NAME_NOT_FOUND);
    let opened = fs.create(&w(path), FILE_NON_DIRECTORY_FILE, WRITE | DELETE, FILE_ATTRIBUTE_ARCHIVE).await.unwrap();
    fs.set_file_size(&opened.handle, content.len() as u64, true).await.unwrap();
    fs.set_file_size(&opened.handle, content.len() as u64, false).await.unwrap();
    for (index, piece) in content.chunks(64 << 10).enumerate() {
        let (written, _) = fs.write(&opened.handle, piece, (index * (64 << 10)) as u64, false, false).await.unwrap();
        assert_eq!(written as usize, piece.len());
    }
    let info = fs.set_basic_info(&opened.handle, u32::MAX, Y2K).await.unwrap();
    fs.cleanup(&opened.handle, CLEANUP_SET_ARCHIVE_BIT | CLEANUP_SET_LAST_WRITE_TIME).await.unwrap();
    fs.close(opened.handle);
    info
}

/// A program reading a whole file: open, reads of 4 KiB until END_OF_FILE, CloseHandle.
async fn read_all<E: Engine>(fs: &WinFs<E>, path: &str) -> Result<Vec<u8>, NtStatus> {
    let opened = fs.open(&w(path), FILE_NON_DIRECTORY_FILE, READ).await?;
    let mut content = Vec::new();
    let mut buffer = vec![0u8; 4096];
    let end = loop {
        match fs.read(&opened.handle, &mut buffer, content.len() as u64).await {
            Ok(0) => break Ok(()),
            Ok(read) => content.extend_from_slice(&buffer[..read as usize]),
            Err(status) if status == NtStatus::END_OF_FILE => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    fs.cleanup(&opened.handle, 0).await?;
    fs.close(opened.handle);
    end.map(|()| content)
}

/// Every name of a folder as Windows lists it (a listing resumed after each entry, as a small buffer
/// makes WinFsp do), without `.` and `..`.
async fn list<E: Engine>(fs: &WinFs<E>, path: &str) -> Vec<String> {
    let opened = fs.open(&w(path), FILE_DIRECTORY_FILE, READ).await.unwrap();
    let mut names = Vec::new();
    let mut marker: Option<Vec<u16>> = None;
    loop {
        let listed = fs.read_directory(&opened.handle, marker.as_deref()).await.unwrap();
        let Some(first) = listed.first() else { break };
        marker = Some(first.name.to_vec());
        names.push(String::from_utf16(&first.name).unwrap());
    }
    fs.cleanup(&opened.handle, 0).await.unwrap();
    fs.close(opened.handle);
    names.retain(|name| name != "." && name != "..");
    names
}

/// Deleting as Explorer does: open with DELETE, SetDelete, CloseHandle (the last: with the delete flag).
async fn explorer_delete<E: Engine>(fs: &WinFs<E>, path: &str, folder: bool) -> Result<(), NtStatus> {
    let kind = if folder { FILE_DIRECTORY_FILE } else { FILE_NON_DIRECTORY_FILE };
    let opened = fs.open(&w(path), kind, DELETE | FILE_READ_ATTRIBUTES).await?;
    let marked = fs.set_delete(&opened.handle, true).await;
    let flags = if marked.is_ok() { CLEANUP_DELETE } else { 0 };
    let cleaned = fs.cleanup(&opened.handle, flags).await;
    fs.close(opened.handle);
    marked.and(cleaned)
}

/// MoveFileExW: open the source with DELETE, rename, CloseHandle.
async fn move_file<E: Engine>(fs: &WinFs<E>, from: &str, to: &str, replace: bool) -> Result<(), NtStatus> {
    let opened = fs.open(&w(from), 0, DELETE | FILE_READ_ATTRIBUTES).await?;
    let renamed = fs.rename(&opened.handle, &w(to), replace).await;
    fs.cleanup(&opened.handle, 0).await?;
    fs.close(opened.handle);
    renamed
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn explorer_copies_a_folder_in_and_another_device_reads_it<D: Devices>(devices: &D) {
    let fs = new_case(devices, "explorer-copy").await;
    let folder = fs.create(&w("\\Photos"), FILE_DIRECTORY_FILE, READ, FILE_ATTRIBUTE_DIRECTORY).await.unwrap();
    assert_eq!(folder.info.file_attributes & FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_DIRECTORY);
    fs.cleanup(&folder.handle, 0).await.unwrap();
    fs.close(folder.handle);
    let big = pattern(300 << 10, 7);
    let info = explorer_copy(&fs, "\\Photos\\Beach.jpg", &big).await;
    assert_eq!(info.file_size, big.len() as u64);
    assert_eq!(info.last_write_time, Y2K, "the source's time is kept");
    assert_eq!(info.file_attributes, FILE_ATTRIBUTE_ARCHIVE);
    explorer_copy(&fs, "\\Photos\\notes.txt", b"taken at noon").await;
    explorer_copy(&fs, "\\Photos\\empty.txt", b"").await;
    fs.flush(None).await.unwrap();
    assert!(fs.core().status().dirty.is_empty(), "{:?}", fs.core().status().dirty);

    let desktop = windows(devices, "desktop", "explorer-copy").await;
    assert_eq!(list(&desktop, "\\").await, ["Photos"]);
    assert_eq!(list(&desktop, "\\photos").await, ["Beach.jpg", "empty.txt", "notes.txt"]);
    // Explorer's many attribute-only opens download nothing.
    let opened = desktop.open(&w("\\PHOTOS\\beach.JPG"), 0, FILE_READ_ATTRIBUTES).await.unwrap();
    assert_eq!(desktop.get_file_info(&opened.handle).await.unwrap().file_size, big.len() as u64);
    assert_eq!(String::from_utf16(&opened.normalized_path).unwrap(), "\\Photos\\Beach.jpg");
    desktop.cleanup(&opened.handle, 0).await.unwrap();
    desktop.close(opened.handle);
    assert_eq!(desktop.core().status().cache_entries, 0, "an attribute-only open fetched the file");
    assert_eq!(read_all(&desktop, "\\photos\\BEACH.jpg").await.unwrap(), big);
    assert_eq!(read_all(&desktop, "\\Photos\\notes.txt").await.unwrap(), b"taken at noon");
    assert_eq!(read_all(&desktop, "\\Photos\\empty.txt").await.unwrap(), b"");
}

async fn notepad_saves_over_an_existing_file<D: Devices>(devices: &D) {
    let fs = new_case(devices, "notepad").await;
    explorer_copy(&fs, "\\todo.txt", b"first draft\r\nbuy milk\r\n").await;
    fs.flush(None).await.unwrap();

    // Notepad opens and reads the file, keeps no handle, then saves: CreateFileW(GENERIC_WRITE,
    // CREATE_ALWAYS) on an existing file is Open followed by Overwrite, then one write and CloseHandle.
    assert_eq!(read_all(&fs, "\\todo.txt").await.unwrap(), b"first draft\r\nbuy milk\r\n");
    let opened = fs.open(&w("\\todo.txt"), FILE_NON_DIRECTORY_FILE, WRITE).await.unwrap();
    let info = fs.overwrite(&opened.handle, FILE_ATTRIBUTE_ARCHIVE, false).await.unwrap();
    assert_eq!(info.file_size, 0);
    let saved = b"second draft\r\nbuy milk and bread\r\n";
    let (written, info) = fs.write(&opened.handle, saved, 0, false, false).await.unwrap();
    assert_eq!((written as usize, info.file_size), (saved.len(), saved.len() as u64));
    // FlushFileBuffers: the program learns here whether the server has it.
    fs.flush(Some(&opened.handle)).await.unwrap();
    fs.cleanup(&opened.handle, CLEANUP_SET_LAST_WRITE_TIME).await.unwrap();
    fs.close(opened.handle);

    let desktop = windows(devices, "desktop", "notepad").await;
    assert_eq!(read_all(&desktop, "\\todo.txt").await.unwrap(), saved);
    assert_eq!(list(&desktop, "\\").await, ["todo.txt"]);
}

async fn office_safe_save_leaves_only_the_new_document<D: Devices>(devices: &D) {
    let fs = new_case(devices, "office").await;
    let first = pattern(40_000, 1);
    explorer_copy(&fs, "\\Report.docx", &first).await;
    fs.flush(None).await.unwrap();

    // Word opens the document: the hidden owner file ~$port.docx, then the document read whole.
    let owner =
        fs.create(&w("\\~$Report.docx"), FILE_NON_DIRECTORY_FILE, WRITE | DELETE, FILE_ATTRIBUTE_HIDDEN).await.unwrap();
    fs.write(&owner.handle, &pattern(162, 9), 0, false, false).await.unwrap();
    assert_eq!(fs.get_file_info(&owner.handle).await.unwrap().file_attributes, FILE_ATTRIBUTE_HIDDEN);
    assert_eq!(read_all(&fs, "\\Report.docx").await.unwrap(), first);

    // Save: the new version into a temporary, the original renamed away, the temporary renamed over
    // it, the original's old version deleted.
    let second = pattern(52_000, 2);
    explorer_copy(&fs, "\\~WRL0001.tmp", &second).await;
    move_file(&fs, "\\Report.docx", "\\~WRL0003.tmp", false).await.unwrap();
    move_file(&fs, "\\~WRL0001.tmp", "\\Report.docx", true).await.unwrap();
    explorer_delete(&fs, "\\~WRL0003.tmp", false).await.unwrap();

    // Word closes: the owner file goes (delete-on-close set at its open, as Word's is).
    fs.set_delete(&owner.handle, true).await.unwrap();
    assert_eq!(fs.open(&w("\\~$Report.docx"), 0, READ).await.unwrap_err(), NtStatus::DELETE_PENDING);
    fs.cleanup(&owner.handle, CLEANUP_DELETE).await.unwrap();
    fs.close(owner.handle);
    fs.flush(None).await.unwrap();

    assert_eq!(list(&fs, "\\").await, ["Report.docx"]);
    let desktop = windows(devices, "desktop", "office").await;
    assert_eq!(list(&desktop, "\\").await, ["Report.docx"]);
    assert_eq!(read_all(&desktop, "\\Report.docx").await.unwrap(), second);
    assert!(fs.core().status().dirty.is_empty());
}

async fn names_from_other_clients_stay_reachable_under_windows_rules<D: Devices>(devices: &D) {
    devices.new_case("names").await;
    // A Linux device writes names Windows cannot show, and names that differ only in case.
    let linux = devices.engine("linux", "names").await;
    let clear_names = ["a:b?.txt", "CON", "nul.txt", "trailing. ", "Readme.md", "README.md", "plain.txt"];
    for name in clear_names {
        let (attributes, opened) =
            linux.create(1, name, cloakfs::vfs::OpenMode { write: true, truncate: false }, true).await.unwrap();
        linux.write(attributes.ino, 0, name.as_bytes()).await.unwrap();
        linux.close(attributes.ino).await.unwrap();
        linux.release(opened.fh);
    }
    linux.sync_all().await.unwrap();

    let fs = windows(devices, "laptop", "names").await;
    let shown = list(&fs, "\\").await;
    let expected = [
        "C\u{F000}ON",
        "README.md",
        "Readme\u{F07F}2.md",
        "a\u{F03A}b\u{F03F}.txt",
        "n\u{F000}ul.txt",
        "plain.txt",
        "trailing\u{F02E}\u{F020}",
    ];
    assert_eq!(shown, expected);
    // Each Windows name opens the file of its clear name.
    for (windows_name, clear_name) in
        expected.iter().zip(["CON", "README.md", "Readme.md", "a:b?.txt", "nul.txt", "plain.txt", "trailing. "])
    {
        let path = format!("\\{windows_name}");
        assert_eq!(read_all(&fs, &path).await.unwrap(), clear_name.as_bytes(), "{windows_name:?}");
    }
    // Case-insensitive lookups reach the first twin; the marked name the second, in any case.
    assert_eq!(read_all(&fs, "\\readme.MD").await.unwrap(), b"README.md");
    assert_eq!(read_all(&fs, "\\README\u{F07F}2.MD").await.unwrap(), b"Readme.md");

    // Windows writes through the mapping: a name typed with the mapped character makes the real one,
    // and renaming a twin renames that twin only.
    explorer_copy(&fs, "\\why\u{F03F}.txt", b"question").await;
    move_file(&fs, "\\Readme\u{F07F}2.md", "\\Readme-old.md", false).await.unwrap();
    // A case-only rename renames.
    move_file(&fs, "\\plain.txt", "\\PLAIN.txt", false).await.unwrap();
    fs.flush(None).await.unwrap();

    let other = devices.engine("checker", "names").await;
    let mut on_server: Vec<String> = other.readdir(1).await.unwrap().iter().map(|e| e.name.to_string()).collect();
    on_server.sort();
    assert_eq!(
        on_server,
        ["CON", "PLAIN.txt", "README.md", "Readme-old.md", "a:b?.txt", "nul.txt", "trailing. ", "why?.txt"]
    );
    let readme_old = other.lookup(1, "Readme-old.md").await.unwrap();
    let opened = other.clone().open(readme_old.ino, Default::default()).await.unwrap();
    let content = other.read_with(readme_old.ino, 0, 100, |bytes| bytes.to_vec()).await.unwrap();
    other.release(opened.fh);
    assert_eq!(content, b"Readme.md");

    // Names no clear name maps to are refused, never guessed.
    for bad in ["\\bad\u{F000}", "\\twin\u{F07F}.txt"] {
        let refused = fs.create(&w(bad), FILE_NON_DIRECTORY_FILE, WRITE, 0).await.unwrap_err();
        assert_eq!(refused, NtStatus::OBJECT_NAME_INVALID, "{bad:?}");
    }
}

async fn windows_errors_are_the_ntstatus_programs_expect<D: Devices>(devices: &D) {
    let fs = new_case(devices, "errors").await;
    explorer_copy(&fs, "\\file.txt", b"0123456789").await;
    let folder = fs.create(&w("\\Folder"), FILE_DIRECTORY_FILE, READ, 0).await.unwrap();
    fs.cleanup(&folder.handle, 0).await.unwrap();
    fs.close(folder.handle);
    explorer_copy(&fs, "\\Folder\\inside.txt", b"x").await;

    let status = |result: Result<cloakfs::mount::winfs::Opened, NtStatus>| result.map(|_| ()).unwrap_err();
    assert_eq!(status(fs.open(&w("\\missing.txt"), 0, READ).await), NtStatus::OBJECT_NAME_NOT_FOUND);
    assert_eq!(status(fs.open(&w("\\missing\\file.txt"), 0, READ).await), NtStatus::OBJECT_PATH_NOT_FOUND);
    assert_eq!(status(fs.open(&w("\\file.txt\\below"), 0, READ).await), NtStatus::OBJECT_PATH_NOT_FOUND);
    assert_eq!(status(fs.open(&w("\\Folder"), FILE_NON_DIRECTORY_FILE, READ).await), NtStatus::FILE_IS_A_DIRECTORY);
    assert_eq!(status(fs.open(&w("\\file.txt"), FILE_DIRECTORY_FILE, READ).await), NtStatus::NOT_A_DIRECTORY);
    assert_eq!(
        status(fs.create(&w("\\FILE.TXT"), FILE_NON_DIRECTORY_FILE, WRITE, 0).await),
        NtStatus::OBJECT_NAME_COLLISION,
        "names are compared ignoring case"
    );
    assert_eq!(
        status(fs.create(&w("\\nowhere\\new.txt"), FILE_NON_DIRECTORY_FILE, WRITE, 0).await),
        NtStatus::OBJECT_PATH_NOT_FOUND
    );
    assert_eq!(
        status(fs.open(&w("\\Folder"), FILE_DIRECTORY_FILE | FILE_DELETE_ON_CLOSE, DELETE).await),
        NtStatus::DIRECTORY_NOT_EMPTY
    );
    assert_eq!(explorer_delete(&fs, "\\Folder", true).await.unwrap_err(), NtStatus::DIRECTORY_NOT_EMPTY);
    explorer_copy(&fs, "\\other.txt", b"other").await;
    assert_eq!(move_file(&fs, "\\other.txt", "\\File.txt", false).await.unwrap_err(), NtStatus::OBJECT_NAME_COLLISION);
    assert_eq!(move_file(&fs, "\\other.txt", "\\folder", true).await.unwrap_err(), NtStatus::ACCESS_DENIED);
    // Reads at the end; appends (write to end of file); paging writes never extend.
    let opened = fs.open(&w("\\file.txt"), FILE_NON_DIRECTORY_FILE, WRITE).await.unwrap();
    let mut buffer = [0u8; 4];
    assert_eq!(fs.read(&opened.handle, &mut buffer, 10).await.unwrap_err(), NtStatus::END_OF_FILE);
    assert_eq!(fs.read(&opened.handle, &mut buffer, 8).await.unwrap(), 2);
    fs.write(&opened.handle, b"AB", 0, true, false).await.unwrap();
    let (written, info) = fs.write(&opened.handle, b"xyzxyz", 10, false, true).await.unwrap();
    assert_eq!((written, info.file_size), (2, 12));
    assert_eq!(fs.write(&opened.handle, b"zz", 12, false, true).await.unwrap().0, 0);
    fs.cleanup(&opened.handle, 0).await.unwrap();
    fs.close(opened.handle);
    assert_eq!(read_all(&fs, "\\file.txt").await.unwrap(), b"0123456789xy");
    // A delete-pending file cannot be opened again; the last handle's cleanup removes it.
    let first = fs.open(&w("\\other.txt"), 0, DELETE | READ).await.unwrap();
    let second = fs.open(&w("\\other.txt"), 0, READ).await.unwrap();
    fs.set_delete(&first.handle, true).await.unwrap();
    assert_eq!(status(fs.open(&w("\\other.txt"), 0, READ).await), NtStatus::DELETE_PENDING);
    fs.cleanup(&first.handle, 0).await.unwrap();
    fs.close(first.handle);
    fs.cleanup(&second.handle, CLEANUP_DELETE).await.unwrap();
    fs.close(second.handle);
    assert_eq!(status(fs.open(&w("\\other.txt"), 0, READ).await), NtStatus::OBJECT_NAME_NOT_FOUND);
    // Emptied, the folder goes.
    explorer_delete(&fs, "\\Folder\\inside.txt", false).await.unwrap();
    explorer_delete(&fs, "\\Folder", true).await.unwrap();
    fs.flush(None).await.unwrap();
    let desktop = windows(devices, "desktop", "errors").await;
    assert_eq!(list(&desktop, "\\").await, ["file.txt"]);
}

async fn a_listing_resumes_at_its_marker_with_dot_entries_first<D: Devices>(devices: &D) {
    let fs = new_case(devices, "listing").await;
    let folder = fs.create(&w("\\Many"), FILE_DIRECTORY_FILE, READ, 0).await.unwrap();
    fs.cleanup(&folder.handle, 0).await.unwrap();
    for name in ["b.txt", "A.txt", "c.txt", "~tmp", "_x"] {
        explorer_copy(&fs, &format!("\\Many\\{name}"), name.as_bytes()).await;
    }
    let whole = fs.read_directory(&folder.handle, None).await.unwrap();
    let names: Vec<String> = whole.iter().map(|entry| String::from_utf16(&entry.name).unwrap()).collect();
    assert_eq!(names, [".", "..", "A.txt", "_x", "b.txt", "c.txt", "~tmp"]);
    assert_eq!(whole[0].info.file_attributes & FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_DIRECTORY);
    let after_dot = fs.read_directory(&folder.handle, Some(&w("."))).await.unwrap();
    assert_eq!(String::from_utf16(&after_dot[0].name).unwrap(), "..");
    let resumed = fs.read_directory(&folder.handle, Some(&w("_x"))).await.unwrap();
    let names: Vec<String> = resumed.iter().map(|entry| String::from_utf16(&entry.name).unwrap()).collect();
    assert_eq!(names, ["b.txt", "c.txt", "~tmp"]);
    // The root lists no dot entries.
    let root = fs.open(&w("\\"), FILE_DIRECTORY_FILE, READ).await.unwrap();
    let names: Vec<String> = fs
        .read_directory(&root.handle, None)
        .await
        .unwrap()
        .iter()
        .map(|entry| String::from_utf16(&entry.name).unwrap())
        .collect();
    assert_eq!(names, ["Many"]);
    let by_name = fs.get_dir_info_by_name(&folder.handle, &w("a.TXT")).await.unwrap();
    assert_eq!(String::from_utf16(&by_name.name).unwrap(), "A.txt");
    fs.cleanup(&root.handle, 0).await.unwrap();
    fs.close(root.handle);
    fs.close(folder.handle);
}

/// Each replay over both vault formats: a Nextcloud folder on `cloakfs serve` (run in this process) and a
/// Cryptomator vault in a local folder.
macro_rules! over_both_formats {
    ($($scenario:ident),* $(,)?) => {
        mod nextcloud {
            $(
                #[test]
                fn $scenario() {
                    let devices = crate::engine::NextcloudDevices::embedded("windows");
                    crate::engine::Devices::runtime(&devices).block_on(super::$scenario(&devices));
                }
            )*
        }
        mod cryptomator {
            $(
                #[test]
                fn $scenario() {
                    let devices = crate::engine::CryptomatorDevices::local("windows");
                    crate::engine::Devices::runtime(&devices).block_on(super::$scenario(&devices));
                }
            )*
        }
    };
}

over_both_formats!(
    explorer_copies_a_folder_in_and_another_device_reads_it,
    notepad_saves_over_an_existing_file,
    office_safe_save_leaves_only_the_new_document,
    names_from_other_clients_stay_reachable_under_windows_rules,
    windows_errors_are_the_ntstatus_programs_expect,
    a_listing_resumes_at_its_marker_with_dot_entries_first,
);
