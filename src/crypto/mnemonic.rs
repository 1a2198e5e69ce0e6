//! The 12-word mnemonic that protects a user's private key.
//!
//! Words come from the English BIP-39 list. cloakfs generates phrases with a valid BIP-39 checksum, so a
//! typo in a phrase that cloakfs made is caught before the slow key derivation; phrases made by Nextcloud's
//! clients (12 uniformly random words, no checksum) are accepted too. The password fed to the KDF is the
//! full words, lowercased, joined with no separator.

use std::fmt;

use bip39::Language;
use zeroize::Zeroizing;

use super::secret::random_bytes;

/// Number of words in a Nextcloud mnemonic.
pub const WORD_COUNT: usize = 12;

/// A parsed 12-word mnemonic. Wiped on drop; `Debug` never shows the words.
#[derive(Clone)]
pub struct Mnemonic {
    words: Zeroizing<Vec<String>>,
    checksum_valid: bool,
}

/// Why a typed phrase was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MnemonicError {
    /// Not exactly 12 words.
    #[error("a mnemonic has 12 words, this one has {0}")]
    WordCount(usize),
    /// A word (given by its 1-based position, never its text) is not in the English BIP-39 list.
    #[error("word {position} is not in the BIP-39 English word list (check its spelling)")]
    UnknownWord {
        /// 1-based position of the word.
        position: usize,
    },
    /// A prefix matches more than one word.
    #[error("word {position} is an ambiguous abbreviation; type at least 4 letters or the whole word")]
    AmbiguousWord {
        /// 1-based position of the word.
        position: usize,
    },
}

impl Mnemonic {
    /// A fresh phrase: 128 random bits plus the 4-bit BIP-39 checksum, as 12 words.
    pub fn generate() -> Self {
        let mut entropy = Zeroizing::new([0u8; 16]);
        random_bytes(&mut *entropy);
        let phrase = bip39::Mnemonic::from_entropy_in(Language::English, &*entropy)
            .expect("16 bytes of entropy always make a 12-word phrase");
        let words: Vec<String> = phrase.words().map(str::to_owned).collect();
        Self { words: Zeroizing::new(words), checksum_valid: true }
    }

    /// Parses a phrase as a person types it: any case and whitespace, each word either complete or a unique
    /// prefix of at least 4 letters (every English BIP-39 word is unique in its first 4 letters).
    pub fn parse(typed: &str) -> Result<Self, MnemonicError> {
        let list = Language::English.word_list();
        let lowered = Zeroizing::new(typed.to_lowercase());
        let typed_words: Vec<&str> = lowered.split_whitespace().collect();
        if typed_words.len() != WORD_COUNT {
            return Err(MnemonicError::WordCount(typed_words.len()));
        }
        let mut words = Zeroizing::new(Vec::with_capacity(WORD_COUNT));
        for (index, typed_word) in typed_words.iter().enumerate() {
            let position = index + 1;
            let word = if list.binary_search(typed_word).is_ok() {
                typed_word.to_string()
            } else {
                let mut matches = list.iter().filter(|word| word.starts_with(typed_word));
                match (matches.next(), matches.next()) {
                    (Some(word), None) if typed_word.chars().count() >= 4 => word.to_string(),
                    (Some(_), _) => return Err(MnemonicError::AmbiguousWord { position }),
                    (None, _) => return Err(MnemonicError::UnknownWord { position }),
                }
            };
            words.push(word);
        }
        let checksum_valid = {
            let joined = Zeroizing::new(words.join(" "));
            bip39::Mnemonic::parse_in_normalized(Language::English, &joined).is_ok()
        };
        Ok(Self { words, checksum_valid })
    }

    /// Whether the phrase carries a valid BIP-39 checksum. Phrases cloakfs generates always do; phrases
    /// from Nextcloud's clients usually do not (1 in 16 do by chance), so `false` is not an error.
    pub fn has_valid_checksum(&self) -> bool {
        self.checksum_valid
    }

    /// The phrase for display: the 12 words separated by single spaces.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.words.join(" "))
    }

    /// The KDF password: the words lowercased, all whitespace removed (Nextcloud's convention).
    pub fn kdf_password(&self) -> Zeroizing<String> {
        Zeroizing::new(self.words.concat())
    }
}

impl fmt::Debug for Mnemonic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Mnemonic(redacted, checksum_valid: {})", self.checksum_valid)
    }
}
