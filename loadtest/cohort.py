"""The cohort: fictional graduates (a roster staff import as CSV) and the compliant photos they send."""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from rules.identity import check_digit

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红玲芬燕彬鹏辉建国文斌宇浩凯健俊帆帅旭宁龙林欣佳雪琳晨阳"
LEVELS = ("专科", "本科")  # [collection] levels by default: the candidate answers 1 or 2
MAJORS = ("汉语言文学", "工商企业管理", "计算机科学与技术", "会计", "法学")
ROSTER_HEADER = ["姓名", "身份证号", "准考证号", "学历层次", "专业"]


@dataclass(frozen=True)
class Graduate:
    openid: str
    name: str
    id_number: str
    exam_number: str
    level: str
    major: str
    phone: str

    @property
    def level_choice(self) -> str:
        return str(LEVELS.index(self.level) + 1)


def graduates(count: int, tag: str, seed: int = 8) -> list[Graduate]:
    """`count` graduates with distinct, valid GB 11643 ID numbers; openids carry the run's `tag`."""
    rng = random.Random(seed)
    people, seen = [], set()
    while len(people) < count:
        born = date(1975, 1, 1) + timedelta(days=rng.randrange(365 * 28))
        first17 = f"110105{born:%Y%m%d}{rng.randrange(1000):03d}"
        id_number = first17 + check_digit(first17)
        if id_number in seen:
            continue
        seen.add(id_number)
        index = len(people)
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        people.append(Graduate(
            openid=f"o_load_{tag}_{index:05d}", name=name, id_number=id_number,
            exam_number=f"0124{index:08d}", level=LEVELS[index % 2], major=MAJORS[index % len(MAJORS)],
            phone=f"139{rng.randrange(10**8):08d}",
        ))
    return _distinct_phones(people)


def _distinct_phones(people: list[Graduate]) -> list[Graduate]:
    """One number per graduate: SMS deliveries are counted per number."""
    seen, distinct = set(), []
    for index, person in enumerate(people):
        if person.phone in seen:
            person = replace(person, phone=f"138{index:08d}")
        seen.add(person.phone)
        distinct.append(person)
    return distinct


def rejected_first(openid: str, every: int) -> bool:
    """Whether the reviewer rejects this graduate's first photo (every `every`-th graduate; 0: nobody).
    The reviewer and the candidate's walk both know it: the walk then waits for the rejection and
    sends a new photo, which the reviewer approves."""
    return every > 0 and int(openid.rsplit("_", 1)[1]) % every == every - 1


def write_roster(path: Path, people: list[Graduate]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(ROSTER_HEADER)
        for person in people:
            writer.writerow([person.name, person.id_number, person.exam_number, person.level, person.major])
    return path


def labelled_compliant_photos(folder: Path) -> list[Path]:
    """The photos ../shared/photos/labels.json marks `pass`, smallest first ([] when the folder is absent)."""
    labels = folder / "labels.json"
    if not labels.exists():
        return []
    entries = json.loads(labels.read_text(encoding="utf-8"))
    paths = [folder / entry["file"] for entry in entries if entry.get("expect") == "pass"]
    return sorted((path for path in paths if path.exists()), key=lambda path: path.stat().st_size)
