"""Pictures of projects (cover, gallery, updates' photos) and the beneficiary's story: stored
resized without metadata, refused with nothing stored, served with caching headers, shown with
srcset and their size, and managed by the organization's staff only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.core import files
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.files import Attachment
from shanju.core.images import ImageVariant
from shanju.projects import service
from shanju.projects.models import Project, ProjectStatus
from tests.core.test_images import REFUSED, refused_bytes
from tests.factories import make_org, make_project
from tests.projects.helpers import api_token, image_bytes, sign_in, staff_of

S = ProjectStatus


def _gps_photo(size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A phone photo with its position (GPS) and camera in EXIF."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "ShanjuTestCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (26.0, 52.0, 10.0)
    return image_bytes("JPEG", size, exif=exif.tobytes())


def _stored(session: Session, upload_dir: Path) -> tuple[int, int, int]:
    """Attachments, picture variants and files on disk."""
    files_on_disk = [p for p in upload_dir.rglob("*") if p.is_file()] if upload_dir.exists() \
        else []
    return (int(session.scalar(select(func.count()).select_from(Attachment)) or 0),
            int(session.scalar(select(func.count()).select_from(ImageVariant)) or 0),
            len(files_on_disk))


def test_a_cover_is_stored_at_every_width_with_no_exif_on_disk(db: Database,
                                                               tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        staff = staff_of(s, org)
        cover = service.do_set_cover(session=s, actor=staff, project=project,
                                     upload=files.Upload("家访.jpg", _gps_photo()),
                                     upload_dir=tmp_path, alt_text="孩子们在新教室里读书")
        assert project.cover_image_id == cover.id
        assert (cover.content_type, cover.width, cover.height) == ("image/webp", 1280, 960)
        assert cover.alt_text == "孩子们在新教室里读书"
        variants = s.scalars(select(ImageVariant).where(ImageVariant.attachment_id == cover.id)
                             .order_by(ImageVariant.width)).all()
        assert [(v.width, v.height) for v in variants] == [(320, 240), (640, 480), (1280, 960)]
        assert variants[-1].sha256 == cover.sha256
        for v in variants:
            data = files.path_for(tmp_path, v.sha256).read_bytes()
            assert b"ShanjuTestCam" not in data and b"Exif" not in data
            with Image.open(io.BytesIO(data)) as im:
                assert im.size == (v.width, v.height) and not im.getexif()
                assert "exif" not in im.info
        # A new cover replaces the old one: its rows go, so its address answers 404.
        second = service.do_set_cover(session=s, actor=staff, project=project,
                                      upload=files.Upload("new.png", image_bytes()),
                                      upload_dir=tmp_path)
        assert project.cover_image_id == second.id
        assert s.get(Attachment, cover.id) is None
        assert s.scalar(select(func.count()).select_from(ImageVariant)
                        .where(ImageVariant.attachment_id == cover.id)) == 0


@pytest.mark.parametrize(("data", "code"), REFUSED)
def test_a_refused_picture_leaves_nothing_stored(client: TestClient, db: Database,
                                                 settings: Settings, data: bytes | str,
                                                 code: str) -> None:
    with db.transaction() as s:
        org = make_org(s)
        pid = make_project(s, org=org).id
        sid = staff_of(s, org).id
    headers = api_token(db, sid)
    upload = refused_bytes(data)
    answers = [
        client.post(f"/api/v1/projects/{pid}/cover", headers=headers,
                    files={"photo": ("家访.jpg", upload, "image/jpeg")}),
        client.post(f"/api/v1/projects/{pid}/gallery", headers=headers,
                    files=[("photos", ("ok.png", image_bytes(), "image/png")),
                           ("photos", ("家访.jpg", upload, "image/jpeg"))]),
        client.post(f"/api/v1/projects/{pid}/updates", headers=headers,
                    data={"title": "进展", "body": "第一批物资已送达"},
                    files=[("photos", ("家访.jpg", upload, "image/jpeg"))]),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == code
    with db.transaction(write=False) as s:
        assert _stored(s, settings.upload_dir) == (0, 0, 0)
        project = s.get(Project, pid)
        assert project is not None and project.cover_image_id is None


def test_the_gallery_describes_removes_and_has_a_limit(db: Database, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "MAX_GALLERY_PHOTOS", 3)
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        staff = staff_of(s, org)
        added = service.do_add_gallery_photos(
            session=s, actor=staff, project=project, alt_text="志愿者在发放温暖包",
            photos=[files.Upload("1.jpg", _gps_photo((700, 500))),
                    files.Upload("2.png", image_bytes())], upload_dir=tmp_path)
        assert [a.alt_text for a in added] == ["志愿者在发放温暖包"] * 2
        with pytest.raises(InvalidInput) as err:
            service.do_add_gallery_photos(
                session=s, actor=staff, project=project, upload_dir=tmp_path,
                photos=[files.Upload("3.png", image_bytes()), files.Upload("4.png",
                                                                          image_bytes())])
        assert err.value.code == "too_many_photos"
        described = service.do_describe_picture(session=s, actor=staff, project=project,
                                                attachment_id=added[0].id, alt_text="发放现场")
        assert described.alt_text == "发放现场"
        service.do_remove_picture(session=s, actor=staff, project=project,
                                  attachment_id=added[0].id)
        assert [a.id for a in service.list_gallery(session=s, project_id=project.id)] == [
            added[1].id]
        # Another project's picture is not this project's to remove.
        other = make_project(s, org=org)
        with pytest.raises(NotFound) as missing:
            service.do_remove_picture(session=s, actor=staff, project=other,
                                      attachment_id=added[1].id)
        assert missing.value.code == "picture_not_found"


def test_only_the_projects_staff_change_its_pictures_until_it_is_taken_down(
        db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        outsider = staff_of(s, make_org(s))
        with pytest.raises(PermissionDenied) as denied:
            service.do_set_cover(session=s, actor=outsider, project=project,
                                 upload=files.Upload("c.png", image_bytes()),
                                 upload_dir=tmp_path)
        assert denied.value.code == "not_your_project"
        project.status = S.TAKEN_DOWN
        with pytest.raises(Conflict) as conflict:
            service.do_add_gallery_photos(session=s, actor=staff_of(s, org), project=project,
                                          photos=[files.Upload("c.png", image_bytes())],
                                          upload_dir=tmp_path)
        assert conflict.value.code == "project_taken_down"
        assert _stored(s, tmp_path)[:2] == (0, 0)


def test_pictures_are_served_by_width_with_caching_headers(client: TestClient, db: Database,
                                                           settings: Settings) -> None:
    with db.transaction() as s:
        org = make_org(s)
        public = make_project(s, org=org)
        draft = make_project(s, org=org, status=S.DRAFT)
        staff = staff_of(s, org)
        cover = service.do_set_cover(session=s, actor=staff, project=public,
                                     upload=files.Upload("c.jpg", _gps_photo()),
                                     upload_dir=settings.upload_dir).id
        hidden = service.do_set_cover(session=s, actor=staff, project=draft,
                                      upload=files.Upload("d.png", image_bytes()),
                                      upload_dir=settings.upload_dir).id
    for asked, width in ((None, 1280), (320, 320), (321, 640), (1, 320), (5000, 1280)):
        got = client.get(f"/files/{cover}", params={"w": asked} if asked else None)
        assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(got.content)).size[0] == width
        assert got.headers["cache-control"] == "public, max-age=86400"
        etag = got.headers["etag"]
        again = client.get(f"/files/{cover}", params={"w": asked} if asked else None,
                           headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    assert client.get(f"/files/{cover}", params={"w": "0"}).status_code == 422
    # A draft's picture: not to the public, and never into a shared cache.
    assert client.get(f"/files/{hidden}", params={"w": 320}).status_code == 404
    sign_in(client, db, staff.id)
    own = client.get(f"/files/{hidden}", params={"w": 320})
    assert own.status_code == 200 and own.headers["cache-control"] == "private, no-store"


def _img_tags(html: str, cls: str) -> list[str]:
    return re.findall(rf'<img class="{cls}"[^>]*>', html)


def test_pages_show_covers_with_srcset_and_size_or_a_quiet_fallback(
        client: TestClient, db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        org = make_org(s)
        with_cover = make_project(s, org=org, title="有封面的项目")
        without = make_project(s, org=org, title="没有封面的项目")
        staff = staff_of(s, org)
        service.do_set_cover(session=s, actor=staff, project=with_cover,
                             upload=files.Upload("c.jpg", _gps_photo()),
                             upload_dir=settings.upload_dir, alt_text="新建的乡村教室")
        service.do_add_gallery_photos(session=s, actor=staff, project=with_cover,
                                      photos=[files.Upload("g.png", image_bytes(size=(800,
                                                                                      600)))],
                                      upload_dir=settings.upload_dir)
        with_cover.featured = True
        with_cover.story = "小雨（化名）今年十岁，每周走两个小时山路上学。"
        ids = (with_cover.id, without.id, with_cover.cover_image_id)
    page = client.get(f"/projects/{ids[0]}").text
    [hero] = _img_tags(page, "hero-cover")
    assert f'srcset="/files/{ids[2]}?w=320 320w, /files/{ids[2]}?w=640 640w, ' \
           f'/files/{ids[2]}?w=1280 1280w"' in hero
    assert 'sizes="' in hero and 'width="1280" height="960"' in hero
    assert 'alt="新建的乡村教室"' in hero and 'fetchpriority="high"' in hero
    assert 'id="gallery"' in page and 'loading="lazy"' in page
    assert 'id="story"' in page and "小雨（化名）" in page
    for listing in ("/projects", "/"):
        html = client.get(listing).text
        cards = _img_tags(html, "cover")
        assert any(f"/files/{ids[2]}?w=320 320w" in c and 'loading="lazy"' in c
                   and 'width="1280"' in c for c in cards), listing
    # No cover: the category's band, not a big placeholder character.
    bare = client.get(f"/projects/{ids[1]}").text
    assert 'class="hero-cover cover-fallback"' in bare and "cover placeholder" not in bare
    assert 'id="story"' not in bare
    card = re.search(rf'data-project-id="{ids[1]}">\s*(<[^>]*>)', client.get("/projects").text)
    assert card is not None and "cover-fallback" in card.group(1)


def test_the_console_uploads_describes_and_removes_pictures(client: TestClient, db: Database,
                                                            settings: Settings) -> None:
    with db.transaction() as s:
        org = make_org(s)
        pid = make_project(s, org=org).id
        uid = staff_of(s, org).id
    csrf = sign_in(client, db, uid)
    console = client.get(f"/console/projects/{pid}").text
    assert 'id="pictures"' in console and "征得" in console  # the consent reminder
    bad = client.post(f"/console/projects/{pid}/pictures",
                      data={"csrf_token": csrf, "kind": "gallery", "alt": "照片"},
                      files=[("photos", ("坏图.jpg", b"\xff\xd8\xff\xe0broken", "image/jpeg"))])
    assert bad.status_code == 422 and 'data-code="image_corrupt"' in bad.text
    assert "坏图.jpg" in bad.text
    ok = client.post(f"/console/projects/{pid}/pictures",
                     data={"csrf_token": csrf, "kind": "cover", "alt": "孩子们的新课桌"},
                     files=[("photos", ("c.jpg", _gps_photo(), "image/jpeg"))],
                     follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].endswith("#pictures")
    with db.transaction(write=False) as s:
        project = s.get(Project, pid)
        assert project is not None and project.cover_image_id is not None
        cover_id = project.cover_image_id
    described = client.post(f"/console/projects/{pid}/pictures/{cover_id}/describe",
                            data={"csrf_token": csrf, "alt": "新课桌"}, follow_redirects=False)
    assert described.status_code == 303
    assert 'alt="新课桌"' in client.get(f"/projects/{pid}").text
    removed = client.post(f"/console/projects/{pid}/pictures/{cover_id}/remove",
                          data={"csrf_token": csrf}, follow_redirects=False)
    assert removed.status_code == 303
    assert client.get(f"/files/{cover_id}").status_code == 404
    with db.transaction(write=False) as s:
        project = s.get(Project, pid)
        assert project is not None and project.cover_image_id is None


def test_the_story_is_written_in_the_project_form_and_checked(client: TestClient,
                                                              db: Database) -> None:
    with db.transaction() as s:
        uid = staff_of(s, make_org(s)).id
    csrf = sign_in(client, db, uid)
    form = {"csrf_token": csrf, "title": "山区助学", "summary": "资助学生", "category": "education",
            "province": "云南", "goal": "50000", "fundraising_plan": "每人每学期1000元",
            "story": "字" * 3001}
    new = client.get("/console/projects/new").text
    assert 'name="story"' in new and 'id="story-consent"' in new
    too_long = client.post("/console/projects/new", data=form)
    assert too_long.status_code == 422 and 'data-code="story_too_long"' in too_long.text
    form["story"] = "阿木（化名）上初二，放学后要照顾两个弟弟。"
    ok = client.post("/console/projects/new", data=form, follow_redirects=False)
    assert ok.status_code == 303
    pid = int(ok.headers["location"].rsplit("/", 1)[-1])
    with db.transaction(write=False) as s:
        project = s.get(Project, pid)
        assert project is not None and project.story == form["story"]
    api = client.get(f"/api/v1/projects/{pid}").json()
    assert api["story"] == form["story"] and api["cover"] is None and api["gallery"] == []
