"""A logo uploaded in the admin console: checked, re-encoded and stored per tenant (ThemeAsset "logo").

Only raster images are taken: PNG, JPEG and WebP, recognised by their content (not the file name), at most
MAX_BYTES and MAX_PIXELS, decoded and saved again by Pillow at most MAX_SIDE pixels wide or high, so what is
served is a plain image without metadata or anything appended. SVG is refused: it is a document that can
carry script and links. The stored logo is named in the branding as `uploaded/<digest>.<ext>`, the same field
a logo file in the tenant's folder uses, so the header shows whichever was set last.
"""

import hashlib
import io
import warnings

import sqlalchemy as sa
from PIL import Image, UnidentifiedImageError

from kindstride.db import db
from kindstride.web.models import ThemeAsset

MAX_BYTES = 1024 * 1024
MAX_PIXELS = 25_000_000  # a 5000 x 5000 image; a larger one is refused before it is decoded
MAX_SIDE = 1024
FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
CONTENT_TYPES = {extension: content_type for content_type, extension in FORMATS.values()}
UPLOADED_PREFIX = "uploaded/"
LOGO = "logo"
ACCEPT = "image/png,image/jpeg,image/webp"


class LogoError(ValueError):
    """Why a file is not taken as a logo: a code the page turns into a sentence in the site's language."""

    def __init__(self, code, **params):
        super().__init__(code)
        self.code, self.params = code, params


def _looks_like_svg(filename, data):
    head = data[:1024].lstrip().lower()
    return (filename or "").lower().endswith((".svg", ".svgz")) or head.startswith((b"<?xml", b"<svg")) \
        or b"<svg" in head


def prepare(filename, data) -> tuple[bytes, str, str]:
    """The logo as it will be served: (bytes, content type, extension); LogoError when the file is refused."""
    if not data:
        raise LogoError("empty")
    if len(data) > MAX_BYTES:
        raise LogoError("too_large", limit=MAX_BYTES)
    if _looks_like_svg(filename, data):
        raise LogoError("svg")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                if kind not in FORMATS:
                    raise LogoError("type")
                width, height = probe.size
                if width * height > MAX_PIXELS:
                    raise LogoError("too_many_pixels")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return _encode(image, kind)
    except LogoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LogoError("too_many_pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise LogoError("type") from None


def _encode(image, kind):
    content_type, extension = FORMATS[kind]
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if kind == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    if kind == "PNG":
        image.save(out, "PNG", optimize=True)
    elif kind == "JPEG":
        image.save(out, "JPEG", quality=90)
    else:
        image.save(out, "WEBP", quality=90)
    return out.getvalue(), content_type, extension


def store(data, content_type, extension, uploaded_by=None) -> str:
    """Keep the tenant's logo (replacing the previous one); returns its name for the branding's `logo`."""
    digest = hashlib.sha256(data).hexdigest()
    asset = db.session.scalar(sa.select(ThemeAsset).where(ThemeAsset.name == LOGO).with_for_update())
    if asset is None:
        asset = ThemeAsset(name=LOGO)
        db.session.add(asset)
    asset.content_type, asset.digest, asset.data = content_type, digest, data
    asset.uploaded_by_id = uploaded_by.id if uploaded_by is not None else None
    db.session.flush()
    return f"{UPLOADED_PREFIX}{digest[:32]}.{extension}"


def uploaded(name) -> ThemeAsset | None:
    """The stored logo the branding names `uploaded/<digest>.<ext>`, or None (another or no upload)."""
    if not name or not name.startswith(UPLOADED_PREFIX):
        return None
    stem, _dot, extension = name.removeprefix(UPLOADED_PREFIX).partition(".")
    asset = db.session.scalar(sa.select(ThemeAsset).where(ThemeAsset.name == LOGO))
    if asset is None or len(stem) != 32 or not asset.digest.startswith(stem):
        return None
    if CONTENT_TYPES.get(extension) != asset.content_type:
        return None
    return asset
