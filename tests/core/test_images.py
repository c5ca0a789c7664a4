"""The picture pipeline (core/images.py): resized into the widths, upright, stripped of every
metadata block, and refused with a specific code when the file is not a usable image."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms

from shanju.core import files, images
from shanju.core.errors import InvalidInput

CAMERA = "ShanjuTestCam"  # a marker to look for in the stored bytes
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description GPSLatitude="39.9"/></x:xmpmeta>'


def _exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.DateTimeOriginal] = "2024:05:01 08:30:00"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (39.0, 54.0, 27.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (116.0, 23.0, 30.0)
    return exif


def _photo(fmt: str, size: tuple[int, int], *, orientation: int = 1, metadata: bool = True,
           mode: str = "RGB") -> bytes:
    """A picture whose left half is red and right half blue (to see which way is up), with
    EXIF (camera, time, GPS), XMP and an ICC profile when ``metadata``."""
    im = Image.new(mode, size, "blue" if mode != "L" else 200)
    im.paste("red" if mode != "L" else 20, (0, 0, size[0] // 2, size[1]))
    options: dict[str, object] = {}
    if metadata:
        options["exif"] = _exif_with_gps(orientation).tobytes()
        options["icc_profile"] = ImageCms.ImageCmsProfile(
            ImageCms.createProfile("sRGB")).tobytes()
        if fmt in ("JPEG", "WEBP", "PNG"):
            options["xmp"] = XMP
    if fmt == "JPEG":
        options["comment"] = CAMERA
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The RIFF chunks of a WebP file: (fourcc, payload)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos < len(data):
        fourcc, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunks.append((fourcc, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _assert_bare(data: bytes) -> None:
    """Only image data: no EXIF, XMP or ICC chunk, nor a VP8X flag announcing one."""
    chunks = _webp_chunks(data)
    assert {c for c, _ in chunks} <= {b"VP8 ", b"VP8L", b"VP8X", b"ALPH"}, chunks
    for fourcc, payload in chunks:
        if fourcc == b"VP8X":
            flags = payload[0]
            assert flags & 0b0010_1100 == 0, bin(flags)  # ICC (0x20), EXIF (0x08), XMP (0x04)
    assert CAMERA.encode() not in data
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "WEBP"
        assert not im.getexif()
        assert not {"exif", "xmp", "icc_profile"} & set(im.info)


def test_the_source_pictures_do_carry_gps_and_a_camera() -> None:
    # The stripping tests below start from files that hold what must go.
    for fmt in ("JPEG", "PNG", "WEBP"):
        with Image.open(io.BytesIO(_photo(fmt, (400, 300)))) as im:
            exif = im.getexif()
            assert exif[ExifTags.Base.Make] == CAMERA, fmt
            assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N", fmt
            assert "icc_profile" in im.info, fmt


@pytest.mark.parametrize(("size", "widths"), [
    ((2000, 1500), [320, 640, 1280]),
    ((4032, 3024), [320, 640, 1280]),
    ((900, 600), [320, 640, 900]),
    ((640, 640), [320, 640]),
    ((200, 120), [200]),
])
def test_a_picture_is_stored_at_each_width_it_reaches(size: tuple[int, int],
                                                      widths: list[int]) -> None:
    prepared = images.check_image(files.Upload("p.jpg", _photo("JPEG", size)))
    assert [v.width for v in prepared.variants] == widths
    for variant in prepared.variants:
        assert variant.height == round(size[1] * variant.width / size[0])
        with Image.open(io.BytesIO(variant.data)) as im:
            assert im.size == (variant.width, variant.height)
    assert prepared.largest.width == widths[-1]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_gps_xmp_and_colour_profiles_are_gone_from_every_variant(fmt: str) -> None:
    prepared = images.check_image(files.Upload(f"p.{fmt.lower()}", _photo(fmt, (1600, 1200))))
    assert len(prepared.variants) == 3
    for variant in prepared.variants:
        _assert_bare(variant.data)


def test_the_orientation_is_applied_before_the_exif_goes() -> None:
    # Stored landscape, shown portrait (rotated 90° clockwise): red on the left becomes top.
    prepared = images.check_image(files.Upload("p.jpg", _photo("JPEG", (1600, 1200),
                                                               orientation=6)))
    largest = prepared.largest
    assert (largest.width, largest.height) == (1200, 1600)
    with Image.open(io.BytesIO(largest.data)) as im:
        rgb = im.convert("RGB")
        top, bottom = rgb.getpixel((600, 100)), rgb.getpixel((600, 1500))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red
    assert bottom[2] > 200 and bottom[0] < 60  # blue


def test_transparency_greyscale_and_cmyk_pictures_are_kept() -> None:
    palette = Image.new("P", (300, 200))
    palette.info["transparency"] = 0
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    with_alpha = images.check_image(files.Upload("logo.png", buffer.getvalue()))
    with Image.open(io.BytesIO(with_alpha.largest.data)) as im:
        assert im.mode == "RGBA"
    grey = images.check_image(files.Upload("g.png", _photo("PNG", (500, 400), mode="L",
                                                            metadata=False)))
    assert [v.width for v in grey.variants] == [320, 500]
    cmyk = io.BytesIO()
    Image.new("CMYK", (700, 400), (0, 255, 255, 0)).save(cmyk, "JPEG")
    red = images.check_image(files.Upload("print.jpg", cmyk.getvalue()))
    with Image.open(io.BytesIO(red.largest.data)) as im:
        pixel = im.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple) and pixel[0] > 200 and pixel[1] < 60


def _png_claiming(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header claims ``width`` × ``height`` (a decompression bomb's shape)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _truncated_jpeg() -> bytes:
    im = Image.effect_noise((800, 600), 60).convert("RGB")
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


REFUSED = [
    pytest.param(b"", "file_empty", id="empty"),
    pytest.param(b"just some text, named like a photo", "file_type_not_allowed", id="text"),
    pytest.param(b"GIF89a" + b"\x00" * 64, "file_type_not_allowed", id="gif"),
    pytest.param(b"%PDF-1.7\n" + b"\x00" * 64, "file_type_not_allowed", id="pdf"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "image_corrupt", id="png-garbage"),
    pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image_corrupt", id="jpeg-header-only"),
    pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 32, "image_corrupt",
                 id="webp-garbage"),
    pytest.param("truncated", "image_corrupt", id="jpeg-truncated"),
    pytest.param("bytes", "file_too_large", id="over-5-mb"),
    pytest.param(_png_claiming(8000, 6000), "image_too_large", id="48-megapixels"),
    pytest.param(_png_claiming(40000, 40000), "image_too_large", id="decompression-bomb"),
]


def refused_bytes(value: bytes | str) -> bytes:
    """The bytes of a REFUSED case (the big or slow ones made on demand)."""
    if value == "truncated":
        return _truncated_jpeg()
    if value == "bytes":
        return _photo("PNG", (64, 48), metadata=False) + b"\x00" * files.MAX_UPLOAD_BYTES
    assert isinstance(value, bytes)
    return value


@pytest.mark.parametrize(("data", "code"), REFUSED)
def test_what_is_not_a_usable_image_is_refused_with_its_code(data: bytes | str,
                                                             code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        images.check_image(files.Upload("家访照片.jpg", refused_bytes(data)), field="photos")
    assert err.value.code == code
    assert err.value.field == "photos"
    assert "家访照片.jpg" in str(err.value.message)


def test_a_picture_just_under_the_pixel_limit_is_accepted() -> None:
    side = int(images.MAX_PIXELS ** 0.5)  # 6324 × 6324, one colour: a small PNG
    buffer = io.BytesIO()
    Image.new("L", (side, side), 90).save(buffer, "PNG")
    prepared = images.check_image(files.Upload("big.png", buffer.getvalue()))
    assert prepared.largest.width == 1280


def test_alt_text_is_one_line_of_at_most_200_characters() -> None:
    assert images.check_alt_text("  孩子们在新教室里读书  ") == "孩子们在新教室里读书"
    assert images.check_alt_text(None) == ""
    with pytest.raises(InvalidInput) as err:
        images.check_alt_text("字" * 201)
    assert err.value.code == "alt_text_too_long"
    with pytest.raises(InvalidInput) as err:
        images.check_alt_text("一行\n两行")
    assert err.value.code == "control_character"
