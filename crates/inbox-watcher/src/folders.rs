//! Which folders of a mailbox are read. Servers file bounces and automatic answers they take
//! for spam into a Junk folder, where the owner rarely looks; reading only INBOX would miss
//! them. The rule, applied to the server's LIST answer at every connection:
//!
//! 1. `inbox_watcher.folders`, when set, names the folders for every mailbox; those the
//!    mailbox lacks are skipped (INBOX always exists).
//! 2. Otherwise `inbox_watcher.folder` (INBOX), plus the folder the server marks `\Junk`
//!    (RFC 6154 special use, from `LIST ... RETURN (SPECIAL-USE)` or a plain LIST).
//! 3. A server that does not announce SPECIAL-USE and marks no folder `\Junk`: the first
//!    existing folder with a well-known name ([`WELL_KNOWN_JUNK`], compared without case,
//!    also under an `INBOX.` / `INBOX/` prefix as Courier and Cyrus name folders). A server
//!    that announces SPECIAL-USE and marks none has no Junk folder: names are not guessed.
//!
//! The first folder is the one waited on with IDLE; the others are looked at every
//! `poll_interval_ms` (a bounce in Junk is not urgent, and one IMAP connection per mailbox
//! is kinder to servers that limit them).

use async_imap::types::NameAttribute;

/// Junk folder names of common servers and clients, in the order they are preferred.
pub const WELL_KNOWN_JUNK: [&str; 4] = ["Junk", "Spam", "Junk E-mail", "[Gmail]/Spam"];

/// One folder of the server's LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub delimiter: Option<String>,
    /// Marked `\Junk` (RFC 6154).
    pub junk: bool,
    /// Not `\Noselect` / `\NonExistent`: it can be opened.
    pub selectable: bool,
}

impl Listed {
    pub fn new(name: &str, delimiter: Option<&str>, attributes: &[NameAttribute<'_>]) -> Self {
        let has = |wanted: &str| {
            attributes.iter().any(|a| match a {
                NameAttribute::Extension(ext) => ext.eq_ignore_ascii_case(wanted),
                _ => false,
            })
        };
        Self {
            name: name.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            junk: attributes.iter().any(|a| matches!(a, NameAttribute::Junk)),
            selectable: !attributes
                .iter()
                .any(|a| matches!(a, NameAttribute::NoSelect))
                && !has("\\NonExistent"),
        }
    }
}

/// The folders to read, and the configured ones the mailbox lacks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chosen {
    pub read: Vec<String>,
    pub missing: Vec<String>,
}

/// Applies the rule above. `primary` is `inbox_watcher.folder`, `configured` is
/// `inbox_watcher.folders`, `special_use` whether the server announces SPECIAL-USE.
pub fn choose(
    primary: &str,
    configured: &[String],
    special_use: bool,
    listed: &[Listed],
) -> Chosen {
    let exists =
        |name: &str| is_inbox(name) || listed.iter().any(|l| l.selectable && l.name == name);
    if !configured.is_empty() {
        let (read, missing) = configured.iter().cloned().partition(|name| exists(name));
        return Chosen { read, missing };
    }
    let mut read = vec![primary.to_owned()];
    let same_as_primary = |name: &str| name == primary || (is_inbox(name) && is_inbox(primary));
    let usable = listed
        .iter()
        .filter(|l| l.selectable && !same_as_primary(&l.name));
    let marked = usable.clone().find(|l| l.junk);
    let junk = match marked {
        Some(folder) => Some(folder),
        None if special_use => None,
        None => WELL_KNOWN_JUNK
            .iter()
            .find_map(|known| usable.clone().find(|l| well_known_as(l, known))),
    };
    read.extend(junk.map(|l| l.name.clone()));
    Chosen {
        read,
        missing: Vec::new(),
    }
}

/// INBOX is case-insensitive (RFC 3501); other names are compared as given.
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

fn well_known_as(folder: &Listed, known: &str) -> bool {
    if folder.name.eq_ignore_ascii_case(known) {
        return true;
    }
    // Courier and Cyrus keep every folder under INBOX: `INBOX.Junk`.
    let Some(delimiter) = folder.delimiter.as_deref() else {
        return false;
    };
    folder
        .name
        .get(..5)
        .filter(|prefix| is_inbox(prefix))
        .and_then(|_| folder.name[5..].strip_prefix(delimiter))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(known))
}

#[cfg(test)]
mod tests {
    use async_imap::imap_proto::{MailboxDatum, Response};

    use super::*;

    fn folder(name: &str, junk: bool) -> Listed {
        Listed {
            name: name.to_owned(),
            delimiter: Some("/".to_owned()),
            junk,
            selectable: true,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Parses one LIST response line the way the reader receives it.
    fn parsed(line: &str) -> Listed {
        match Response::parse(line.as_bytes()) {
            Ok((_, Response::MailboxData(MailboxDatum::List(data)))) => {
                Listed::new(&data.name, data.delimiter.as_deref(), &data.name_attributes)
            }
            other => panic!("not a LIST response: {other:?}"),
        }
    }

    #[test]
    fn list_responses_carry_the_special_use_junk_attribute() {
        assert_eq!(
            parsed("* LIST (\\HasNoChildren \\Junk) \"/\" \"Courrier ind&AOk-sirable\"\r\n"),
            Listed {
                name: "Courrier ind&AOk-sirable".to_owned(),
                delimiter: Some("/".to_owned()),
                junk: true,
                selectable: true,
            }
        );
        let plain = parsed("* LIST (\\HasNoChildren) \".\" INBOX.Spam\r\n");
        assert!(!plain.junk && plain.selectable);
        assert!(!parsed("* LIST (\\Noselect \\HasChildren) \"/\" \"[Gmail]\"\r\n").selectable);
        assert!(!parsed("* LIST (\\NonExistent) \"/\" Gone\r\n").selectable);
    }

    #[test]
    fn the_folder_marked_junk_is_read_after_inbox_whatever_its_name() {
        let listed = [
            folder("INBOX", false),
            folder("Spam", false),
            folder("Indésirables", true),
        ];
        for special_use in [true, false] {
            assert_eq!(
                choose("INBOX", &[], special_use, &listed).read,
                names(&["INBOX", "Indésirables"])
            );
        }
    }

    #[test]
    fn without_special_use_a_well_known_name_that_exists_is_read() {
        let listed = [
            folder("INBOX", false),
            folder("spam", false),
            folder("Junk E-mail", false),
        ];
        assert_eq!(
            choose("INBOX", &[], false, &listed).read,
            names(&["INBOX", "spam"]),
            "Spam comes before Junk E-mail, compared without case"
        );
        let gmail = [folder("[Gmail]", false), folder("[Gmail]/Spam", false)];
        assert_eq!(
            choose("INBOX", &[], false, &gmail).read,
            names(&["INBOX", "[Gmail]/Spam"])
        );
        let courier = [Listed {
            delimiter: Some(".".to_owned()),
            ..folder("INBOX.Junk", false)
        }];
        assert_eq!(
            choose("INBOX", &[], false, &courier).read,
            names(&["INBOX", "INBOX.Junk"])
        );
        let lookalikes = [folder("Junkyard", false), folder("Archive/Spam", false)];
        assert_eq!(
            choose("INBOX", &[], false, &lookalikes).read,
            names(&["INBOX"])
        );
    }

    #[test]
    fn a_server_announcing_special_use_without_a_junk_folder_gets_no_guess() {
        let listed = [folder("INBOX", false), folder("Junk", false)];
        assert_eq!(choose("INBOX", &[], true, &listed).read, names(&["INBOX"]));
    }

    #[test]
    fn nothing_to_add_when_there_is_no_junk_folder_or_it_cannot_be_opened() {
        assert_eq!(choose("INBOX", &[], false, &[]).read, names(&["INBOX"]));
        let closed = [Listed {
            selectable: false,
            ..folder("Junk", true)
        }];
        assert_eq!(choose("INBOX", &[], false, &closed).read, names(&["INBOX"]));
        // The primary folder itself is not read twice.
        let inbox_marked = [folder("inbox", true)];
        assert_eq!(
            choose("INBOX", &[], true, &inbox_marked).read,
            names(&["INBOX"])
        );
    }

    #[test]
    fn configured_folders_override_discovery_and_missing_ones_are_skipped() {
        let listed = [
            folder("INBOX", false),
            folder("Junk", true),
            folder("Bounces", false),
        ];
        let chosen = choose(
            "INBOX",
            &names(&["inbox", "Bounces", "Spam"]),
            true,
            &listed,
        );
        assert_eq!(chosen.read, names(&["inbox", "Bounces"]));
        assert_eq!(chosen.missing, names(&["Spam"]));
    }
}
