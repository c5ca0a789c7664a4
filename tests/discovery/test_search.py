"""Search in Chinese (and not): words of any length inside titles, summaries, stories and
organizations' names, on SQLite (FTS5 trigram + LIKE) and PostgreSQL (pg_trgm); the index
follows every edit in the same transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.orm import Session

from shanju.core import search
from shanju.core.db import Database
from shanju.core.errors import InvalidInput
from shanju.core.search import parse_query
from shanju.discovery import service as discovery
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.projects.models import Project
from tests.factories import make_org, make_project, unique_uscc

STORY = "今年冬天，大凉山的孩子们需要棉衣和助学金。We need 100% of your help_here."


def _found(session: Session, text: str) -> list[str]:
    query = discovery.check_project_query(session=session, q=text)
    items, total = discovery.search_projects(session=session, query=query, limit=100)
    assert total == len(items)
    return sorted(i.project.title for i in items)


def _orgs_found(session: Session, text: str) -> list[str]:
    query = discovery.check_org_query(q=text)
    items, _total = discovery.search_organizations(session=session, query=query, per_page=100)
    return sorted(i.organization.name for i in items)


@pytest.fixture
def world(db: Database) -> Database:
    with db.transaction() as s:
        school = make_project(s, org=make_org(s, name="四川蓝天助学基金会"),
                              title="乡村学校冬季温暖包计划")
        school.summary = "为山区孩子送去温暖"
        school.description = STORY
        school.story = "十岁的阿依每天走两小时山路上学，她想当一名乡村教师。"
        pets = make_project(s, org=make_org(s, name="城市动物保护协会"), title="流浪动物救助")
        pets.summary = "救治受伤的流浪猫狗"
        pets.description = "为流浪猫狗提供医疗和领养服务。"
    return db


@pytest.mark.parametrize(("text", "titles"), [
    ("温暖", ["乡村学校冬季温暖包计划"]),            # 2 characters inside the title
    ("学校冬季", ["乡村学校冬季温暖包计划"]),        # 4 characters inside the title
    ("助学", ["乡村学校冬季温暖包计划"]),            # 2 characters inside the story
    ("棉衣和助学", ["乡村学校冬季温暖包计划"]),      # 5 characters inside the description
    ("阿依", ["乡村学校冬季温暖包计划"]),            # 2 characters inside the beneficiary's story
    ("两小时山路", ["乡村学校冬季温暖包计划"]),      # 5 characters inside the story
    ("猫", ["流浪动物救助"]),                        # 1 character
    ("医疗", ["流浪动物救助"]),
    ("救治受伤", ["流浪动物救助"]),                  # inside the summary
    ("流浪 领养", ["流浪动物救助"]),                 # two words, title and story: both needed
    ("温暖 猫狗", []),                               # no project holds both
    ("HELP", ["乡村学校冬季温暖包计划"]),            # ASCII letters in any case
    ("100%", ["乡村学校冬季温暖包计划"]),            # % and _ are characters, not wildcards
    ("p_h", ["乡村学校冬季温暖包计划"]),
    ("%", ["乡村学校冬季温暖包计划"]),
    ("动物保护", ["流浪动物救助"]),                  # the publishing organization's name
    ("计划为山区", []),                              # never across the joint of two fields
    ("包计划 为山", ["乡村学校冬季温暖包计划"]),  # two words may sit in two fields
    ("00_", []),
    ("云南", []),
])
def test_search_finds_words_inside_titles_and_stories(world: Database, text: str,
                                                       titles: list[str]) -> None:
    with world.transaction(write=False) as s:
        assert _found(s, text) == titles


def test_the_index_follows_edits_in_the_same_transaction(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s, name="青山公益基金会")
        project = make_project(s, org=org, title="山区儿童营养午餐")
        assert _found(s, "营养午餐") == ["山区儿童营养午餐"]
        project.title = "乡村图书角"
        project.description = "为村小建一个图书角"
        project.story = "小明第一次借到了《西游记》"
        s.flush()
        # Still in the transaction that changed it: found by the new words only.
        assert _found(s, "营养午餐") == [] and _found(s, "图书角") == ["乡村图书角"]
        assert _found(s, "村小") == ["乡村图书角"]
        assert _found(s, "西游记") == ["乡村图书角"]
        org.name = "绿水公益基金会"
        s.flush()
        assert _orgs_found(s, "绿水公益") == ["绿水公益基金会"]
        assert _orgs_found(s, "青山公益") == []
        # A bulk insert (as the demo seed makes) is indexed too.
        s.execute(insert(Organization), [{
            "name": "宁夏枸杞助农协会", "uscc": unique_uscc(990_001),
            "org_type": OrgType.SOCIAL_GROUP, "registering_authority": "宁夏回族自治区民政厅",
            "province": "宁夏", "contact_phone": "0951-1234567", "description": "",
            "status": OrgStatus.APPROVED}])
        assert _orgs_found(s, "枸杞助农") == ["宁夏枸杞助农协会"]
        s.execute(update(Project).where(Project.id == project.id).values(summary="冬季送暖"))
        assert _found(s, "冬季送暖") == ["乡村图书角"]
        s.delete(project)
        s.flush()
        assert _found(s, "图书角") == []
    with db.transaction(write=False) as s:
        assert _found(s, "图书角") == [] and _orgs_found(s, "绿水") == ["绿水公益基金会"]


def test_organizations_are_found_by_name_short_name_and_description(db: Database) -> None:
    with db.transaction() as s:
        a = make_org(s, name="广东省千禾社区公益基金会")
        a.short_name = "千禾"
        a.description = "支持珠三角的社区营造与流动儿童教育。"
        make_org(s, name="北京春苗儿童救助基金会")
    with db.transaction(write=False) as s:
        assert _orgs_found(s, "千禾") == ["广东省千禾社区公益基金会"]
        assert _orgs_found(s, "社区营造") == ["广东省千禾社区公益基金会"]
        assert _orgs_found(s, "儿童") == ["北京春苗儿童救助基金会", "广东省千禾社区公益基金会"]
        # Those whose name holds the words come first.
        query = discovery.check_org_query(q="儿童")
        items, _ = discovery.search_organizations(session=s, query=query)
        assert items[0].organization.name == "北京春苗儿童救助基金会"


@pytest.mark.parametrize(("raw", "terms"), [
    ("", ()), ("   ", ()), ("，。！", ()),
    ("乡村 学校", ("乡村", "学校")), ("乡村，学校、儿童", ("乡村", "学校", "儿童")),
    ("助学　助学", ("助学",)),  # a full-width space; a repeated word counts once
    ("  温暖包  ", ("温暖包",)),
])
def test_queries_split_at_spaces_and_punctuation(raw: str, terms: tuple[str, ...]) -> None:
    assert parse_query(raw) == terms


@pytest.mark.parametrize(("raw", "code"), [
    ("长" * 51, "query_too_long"),
    ("a b c d e f", "too_many_terms"),
    ("a\x00b", "invalid_query"),
    ("a\x1bb", "invalid_query"),
])
def test_bad_queries_are_refused_with_a_code(raw: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_query(raw)
    assert caught.value.code == code and caught.value.field == "q"


def _plan(session: Session, stmt: object) -> str:
    """The database's plan of ``stmt`` as the application binds it."""
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "

    def explain(*args: object) -> tuple[object, object]:
        return prefix + str(args[2]), args[3]

    event.listen(conn, "before_cursor_execute", explain, retval=True)
    try:
        rows = conn.execute(stmt).cursor.fetchall()  # type: ignore[call-overload]
    finally:
        event.remove(conn, "before_cursor_execute", explain)
    return "\n".join(str(r[-1] if sqlite else r[0]) for r in rows)


def test_the_indexes_answer_the_applications_own_queries(world: Database) -> None:
    """The search's SQL is the one the indexes were built for: SQLite asks the FTS5 table,
    PostgreSQL's trigram index matches the query's expression (the planner matches
    expressions, so a changed one would silently scan)."""
    with world.transaction(write=False) as s:
        sqlite = s.get_bind().dialect.name == "sqlite"
        if not sqlite:
            # The demo's tables are small enough for a scan to win; ask whether the index
            # can answer at all.
            s.execute(text("SET LOCAL enable_seqscan = off"))
        for index, table in ((discovery.PROJECT_INDEX, Project),
                             (discovery.ORGANIZATION_INDEX, Organization)):
            stmt = select(table.id).where(search.matches(index, "学校冬季", dialect=s.get_bind(
            ).dialect.name))
            plan = _plan(s, stmt)
            name = table.__tablename__
            expected = f"{name}_fts VIRTUAL TABLE INDEX" if sqlite else f"ix_{name}_search_trgm"
            assert expected in plan, plan
