//! The look: large type for reading at arm's length, one accent colour per status, and the same
//! spacing everywhere. Applied once at start.

use eframe::egui::{self, Color32, FontFamily, FontId, TextStyle};

pub const OK: Color32 = Color32::from_rgb(0x1b, 0x7f, 0x3b);
pub const FAILED: Color32 = Color32::from_rgb(0xc0, 0x29, 0x2b);
pub const WARNING: Color32 = Color32::from_rgb(0xb8, 0x6e, 0x00);
pub const BUSY: Color32 = Color32::from_rgb(0x1f, 0x5f, 0xb8);
/// Light tints of [`OK`], [`BUSY`], [`WARNING`] and [`FAILED`] for progress bars with text over them.
pub const OK_TINT: Color32 = Color32::from_rgb(0xbf, 0xe3, 0xca);
pub const BUSY_TINT: Color32 = Color32::from_rgb(0xc6, 0xda, 0xf5);
pub const WARNING_TINT: Color32 = Color32::from_rgb(0xf3, 0xdc, 0xb4);
pub const FAILED_TINT: Color32 = Color32::from_rgb(0xf4, 0xc4, 0xc4);
pub const IDLE: Color32 = Color32::from_rgb(0x4a, 0x55, 0x63);
pub const MUTED_TEXT: Color32 = Color32::from_rgb(0x5c, 0x66, 0x70);
pub const PANEL_FILL: Color32 = Color32::from_rgb(0xf4, 0xf6, 0xf8);
pub const CARD_FILL: Color32 = Color32::WHITE;
pub const CARD_STROKE: Color32 = Color32::from_rgb(0xd5, 0xdb, 0xe1);
pub const NAV_FILL: Color32 = Color32::from_rgb(0x1d, 0x26, 0x31);
pub const FIELD_STROKE: Color32 = Color32::from_rgb(0xb4, 0xbd, 0xc6);

/// The text style of the big status line.
pub fn status_style() -> TextStyle {
    TextStyle::Name("status".into())
}

/// Device names on the Provision screen.
pub fn title_style() -> TextStyle {
    TextStyle::Name("title".into())
}

pub const SPACING: f32 = 12.0;
pub const ROW_HEIGHT: f32 = 30.0;

pub fn apply(context: &egui::Context) {
    context.set_theme(egui::Theme::Light);
    context.all_styles_mut(|style| {
        style.text_styles = [
            (TextStyle::Small, FontId::new(13.0, FontFamily::Proportional)),
            (TextStyle::Body, FontId::new(17.0, FontFamily::Proportional)),
            (TextStyle::Monospace, FontId::new(16.0, FontFamily::Monospace)),
            (TextStyle::Button, FontId::new(17.0, FontFamily::Proportional)),
            (TextStyle::Heading, FontId::new(24.0, FontFamily::Proportional)),
            (title_style(), FontId::new(30.0, FontFamily::Proportional)),
            (status_style(), FontId::new(34.0, FontFamily::Proportional)),
        ]
        .into();
        style.spacing.item_spacing = egui::vec2(10.0, 8.0);
        style.spacing.button_padding = egui::vec2(14.0, 7.0);
        style.spacing.interact_size.y = 32.0;
        style.spacing.text_edit_width = 320.0;
        // Scroll bars take their own room: a floating bar would lie over the rows and fields
        // under it, which then cannot be clicked there.
        style.spacing.scroll = egui::style::ScrollStyle::solid();
        style.visuals.panel_fill = PANEL_FILL;
        style.visuals.window_fill = CARD_FILL;
        style.visuals.striped = true;
        // Labels are not text to select: a click on a table row selects the row.
        style.interaction.selectable_labels = false;
        style.visuals.selection.bg_fill = Color32::from_rgb(0xc9, 0xdc, 0xf5);
        style.visuals.selection.stroke.color = Color32::from_rgb(0x12, 0x3c, 0x73);
        style.visuals.widgets.noninteractive.fg_stroke.color = Color32::from_rgb(0x1e, 0x25, 0x2d);
        // Fields and buttons outlined, so they read as controls on a white card.
        style.visuals.widgets.inactive.bg_stroke = egui::Stroke::new(1.0, FIELD_STROKE);
        style.visuals.widgets.inactive.weak_bg_fill = Color32::from_rgb(0xec, 0xef, 0xf2);
        style.visuals.widgets.inactive.fg_stroke.color = Color32::from_rgb(0x1e, 0x25, 0x2d);
        style.visuals.text_edit_bg_color = Some(Color32::from_rgb(0xfb, 0xfc, 0xfd));
    });
}

/// A white card with a light border: the grouping used on every screen.
pub fn card() -> egui::Frame {
    egui::Frame::new()
        .fill(CARD_FILL)
        .stroke(egui::Stroke::new(1.0, CARD_STROKE))
        .corner_radius(8.0)
        .inner_margin(egui::Margin::same(16))
}
