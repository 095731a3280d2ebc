//! A room's vCard (XEP-0054 on a room's address, as ejabberd serves it) and the avatar in it
//! (XEP-0486): owners set it, anyone reads it, and the room's disco#info names the avatar's
//! hash so that clients know it before entering. It is kept as a field of the room's node
//! configuration, so it is stored, restored and deleted with the room.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minidom::Element;
use sha1::{Digest, Sha1};
use verona_pubsub::{ConfigField, NodeConfig};

use crate::xml::{BuilderExt, builder, ns, text_child};

pub const NS: &str = "vcard-temp";
/// The room field holding the vCard, serialized; none when the room has none.
pub const FIELD: &str = "verona#vcard";

/// The room's vCard, or an empty one (XEP-0054: a vCard that was never set reads empty).
pub fn of(config: &NodeConfig) -> Element {
    config
        .extra
        .get(FIELD)
        .and_then(|values| values.first())
        .and_then(|stored| stored.parse::<Element>().ok())
        .filter(|vcard| vcard.is("vCard", NS))
        .unwrap_or_else(|| builder("vCard", NS).build())
}

/// The field keeping `vcard` as the room's: an empty one removes it (XEP-0486 §3.2).
pub fn set(vcard: &Element) -> ConfigField {
    let empty = vcard.children().next().is_none() && vcard.text().trim().is_empty();
    ConfigField::Extra {
        var: FIELD.to_owned(),
        values: if empty {
            Vec::new()
        } else {
            vec![String::from(vcard)]
        },
    }
}

/// The XEP-0153 hashes (SHA-1 of the image, in hex) of the vCard's photos, in order.
pub fn avatar_hashes(config: &NodeConfig) -> Vec<String> {
    of(config)
        .children()
        .filter(|c| c.is("PHOTO", NS))
        .filter_map(|photo| photo.get_child("BINVAL", NS))
        .filter_map(|binval| {
            let text: String = binval.text().split_whitespace().collect();
            BASE64.decode(text).ok()
        })
        .map(|image| crate::hex(&Sha1::digest(&image)))
        .collect()
}

/// The `muc#roominfo` field of a room's disco#info naming its avatar (XEP-0486 §3.3), if it
/// has one.
pub fn avatar_field(config: &NodeConfig) -> Option<Element> {
    let hashes = avatar_hashes(config);
    if hashes.is_empty() {
        return None;
    }
    let avatar = builder("field", ns::DATA_FORMS)
        .with("var", "muc#roominfo_avatarhash")
        .with("type", "text-multi")
        .append_all(
            hashes
                .into_iter()
                .map(|hash| text_child("value", ns::DATA_FORMS, hash)),
        )
        .build();
    Some(avatar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(field: ConfigField) -> NodeConfig {
        let mut config = NodeConfig::default();
        config.set(field);
        config
    }

    /// XEP-0486's example image (an SVG red square) and its hash.
    const SVG: &str = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIzMiIgaGVpZ2h0PSIzMiI+CiA8cmVjdCB4PSIwIiB5PSIwIiB3aWR0aD0iMzIiIGhlaWdodD0iMzIiIGZpbGw9InJlZCIvPgo8L3N2Zz4K";

    #[test]
    fn a_vcard_is_kept_read_back_and_removed_by_an_empty_one() {
        let empty = NodeConfig::default();
        assert_eq!(of(&empty), builder("vCard", NS).build());
        assert!(avatar_field(&empty).is_none());
        let vcard: Element = format!(
            "<vCard xmlns='vcard-temp'><FN>The Garden</FN><PHOTO><TYPE>image/svg+xml</TYPE>\
             <BINVAL>{}\n{}</BINVAL></PHOTO></vCard>",
            &SVG[..40],
            &SVG[40..]
        )
        .parse()
        .unwrap();
        let config = configured(set(&vcard));
        assert_eq!(of(&config), vcard);
        assert_eq!(
            avatar_hashes(&config),
            ["a31c4bd04de69663cfd7f424a8453f4674da37ff"]
        );
        let field = avatar_field(&config).unwrap();
        assert_eq!(field.attr("var"), Some("muc#roominfo_avatarhash"));
        let values: Vec<String> = field.children().map(Element::text).collect();
        assert_eq!(values, ["a31c4bd04de69663cfd7f424a8453f4674da37ff"]);
        let removed = configured(set(&builder("vCard", NS).build()));
        assert_eq!(of(&removed), builder("vCard", NS).build());
    }

    #[test]
    fn a_stored_value_that_is_no_vcard_reads_empty() {
        for stored in ["<not-xml", "<message xmlns='jabber:client'/>"] {
            let config = configured(ConfigField::Extra {
                var: FIELD.to_owned(),
                values: vec![stored.to_owned()],
            });
            assert_eq!(of(&config), builder("vCard", NS).build(), "{stored}");
        }
    }
}
