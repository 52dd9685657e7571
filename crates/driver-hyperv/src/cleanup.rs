//! Folder clean-up: how a folder is removed through WMI without deleting what someone puts
//! into it after the check.
//!
//! # The finding (issue 13, defect 10)
//! Whether `Win32_Directory.Delete` refuses a folder that is not empty is **not proven**, and
//! the sources lean the other way:
//! - Microsoft's page for the method (`desktop-src/CIMWin32Prov/delete-method-in-class-
//!   win32-directory.md`) says only that it "will delete the logical file (or directory)
//!   specified in the object path" and that the folder "is immediately removed"; return value
//!   14 "The directory is not empty" is one line of the table every `CIM_LogicalFile` method
//!   shares (the same table is on `CIM_DataFile.Delete`, where it cannot apply), not a
//!   statement about this method;
//! - its sibling `DeleteEx` (same class, "an extended version of the Delete method") takes a
//!   `StartFileName`, "the child file (or directory) to use as a starting point", and answers a
//!   `StopFileName`, "the file (or directory) where the method failed": a method that walks
//!   the folder's children and deletes them, resumable where it stopped. A method that only
//!   removed an empty folder would have no child to start from or stop at;
//! - no independent report we could find (searches of public code, issues and Q&A pages) shows
//!   it answering 14 for a folder with files, and the class page's own example deletes
//!   `C:\Scripts` without emptying it first.
//!
//! So vmove assumes it may recurse. A check that a folder is empty followed by that call could
//! then delete whatever someone put into the folder between the check and the call. WMI offers
//! no folder removal with `rmdir` semantics (the file system's `RemoveDirectory`, which refuses
//! a non-empty folder); the only other way would be running a program on the host
//! (`Win32_Process.Create` of `cmd /c rd`), which needs rights vmove does not ask for and hands
//! a path to a command interpreter.
//!
//! # What vmove does
//! It never deletes a folder under a name anyone else knows:
//! 1. the folder is checked empty (no subfolder, no file) as before;
//! 2. it is renamed (`Win32_Directory.Rename`, one rename in the file system: atomic) to
//!    `<name>.vmove-removing-<random>`, in the same parent. From then on nothing can be put
//!    into it by path: the old path no longer exists (a program that writes there creates a new
//!    folder of that name, untouched by what follows), and the new name is known to no one.
//!    Windows refuses to rename a folder while a file in it is open;
//! 3. the renamed folder is checked empty again, and only then deleted
//!    (`Win32_Directory.Delete`). Whatever the delete may take along is what this last check
//!    saw: nothing;
//! 4. if the second check finds anything (it arrived between 1 and 2), the folder is renamed
//!    back and kept; if that rename fails, the error names both paths for a person.
//!
//! What remains is a program that held the folder itself open from before the rename and
//! creates a file through that handle between 3 and the delete: no WMI call can exclude it,
//! and the window is one request long.
//!
//! Files are unaffected: `CIM_DataFile.Delete` deletes one file, the one the driver checked.

/// The name a folder is set aside under before its removal (same parent, so the rename never
/// moves data between volumes).
pub fn aside_name(path: &str, token: &str) -> String {
    format!("{}.vmove-removing-{token}", path.trim_end_matches('\\'))
}

/// The words for a person when a set-aside folder could not be handled.
pub fn put_back_words(aside: &str, path: &str) -> String {
    format!("it is kept as {aside}; rename it back to {path} (or remove it) by hand")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_set_aside_beside_itself_under_a_name_of_its_own() {
        assert_eq!(
            aside_name("E:\\VMs\\app\\Snapshots\\", "0f1e"),
            "E:\\VMs\\app\\Snapshots.vmove-removing-0f1e"
        );
        assert!(put_back_words("E:\\a.x", "E:\\a").contains("rename it back to E:\\a"));
    }
}
