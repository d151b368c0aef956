//! The station's Noise static key held by a PKCS#11 token: a snow crypto resolver whose X25519
//! uses the token for the static key's Diffie-Hellman and snow's own implementation for
//! everything else (the ephemeral key, hashing, the cipher).
//!
//! snow is given a stand-in for the static private key ([`TOKEN_STATIC_STAND_IN`]); the resolver's
//! X25519 recognises it and from then on answers with the token's public key and derives with the
//! token. The stand-in is no key: it is public, and never used as a scalar.

use crate::hsm::TokenKey;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// What snow is given as the static private key when the token holds it.
pub const TOKEN_STATIC_STAND_IN: [u8; 32] = *b"keyfill: static key in the token";

/// The token's static key and its public key.
#[derive(Debug, Clone)]
pub struct TokenStatic {
    pub key: TokenKey,
    pub public: [u8; 32],
}

/// snow's default resolver, with an X25519 that knows the token's static key.
#[derive(Debug)]
pub struct TokenResolver {
    token_static: TokenStatic,
}

impl TokenResolver {
    pub fn new(token_static: TokenStatic) -> Self {
        TokenResolver { token_static }
    }
}

impl CryptoResolver for TokenResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        let software = DefaultResolver.resolve_dh(choice)?;
        let token = matches!(choice, DHChoice::Curve25519).then(|| self.token_static.clone());
        Some(Box::new(TokenAwareDh { software, token, in_token: false }))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// X25519 in software, or with the token's static key once snow sets the stand-in.
struct TokenAwareDh {
    software: Box<dyn Dh>,
    token: Option<TokenStatic>,
    in_token: bool,
}

impl Dh for TokenAwareDh {
    fn name(&self) -> &'static str {
        self.software.name()
    }

    fn pub_len(&self) -> usize {
        self.software.pub_len()
    }

    fn priv_len(&self) -> usize {
        self.software.priv_len()
    }

    fn set(&mut self, privkey: &[u8]) {
        self.in_token = self.token.is_some() && privkey == TOKEN_STATIC_STAND_IN;
        if !self.in_token {
            self.software.set(privkey);
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        self.in_token = false;
        self.software.generate(rng)
    }

    fn pubkey(&self) -> &[u8] {
        match (&self.token, self.in_token) {
            (Some(token), true) => &token.public,
            _ => self.software.pubkey(),
        }
    }

    fn privkey(&self) -> &[u8] {
        match self.in_token {
            true => &TOKEN_STATIC_STAND_IN,
            false => self.software.privkey(),
        }
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let Some(token) = self.token.as_ref().filter(|_| self.in_token) else {
            return self.software.dh(pubkey, out);
        };
        let peer: [u8; 32] = pubkey.get(..32).and_then(|key| key.try_into().ok()).ok_or(snow::Error::Dh)?;
        let shared = token.key.derive_x25519(&peer).map_err(|error| {
            tracing::error!("the station's token did not derive with its static key: {error}");
            snow::Error::Dh
        })?;
        out.get_mut(..32).ok_or(snow::Error::Dh)?.copy_from_slice(shared.as_slice());
        Ok(())
    }
}
