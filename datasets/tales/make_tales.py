# Generator for the "Small tales" corpus (small_tales.txt / small_tales.val.txt), the demo model's pretraining text; seeded, reproducible.
#
# Written for QLoRA Studio; free to use under the project's license.
#
# Short stories in simple English with a small vocabulary, in the shape of the Pip corpus ("Once upon a time, there
# was a little ... named ..."), but about other animals and children in other places: no Pip, no mouse, no
# lighthouse and no sea, so that a model pretrained on it writes readable English and only learns about Pip from the
# Pip corpus (datasets/stories/). Each story: an opening, a home, one plot from PLOTS with a friend, an ending.
# Run from anywhere:
#
#     python3 datasets/tales/make_tales.py
#
# It rewrites both files next to this script; the same seed always gives the same bytes.

import os
import random
import sys

SEED = 1127
N_TRAIN = 1200
N_VAL = 40

R = random.Random(SEED)


def c(*opts):
    """Pick one of the given options."""
    return R.choice(opts)


# Heroes and friends: name, kind, pronoun (he / she).
CHARACTERS = [
    ("Lily", "girl", "she"), ("Ben", "boy", "he"), ("Tim", "boy", "he"), ("Mia", "girl", "she"),
    ("Sam", "dog", "he"), ("Lucy", "cat", "she"), ("Max", "dog", "he"), ("Rosa", "bunny", "she"),
    ("Leo", "lion", "he"), ("Zoe", "duck", "she"), ("Bob", "bear", "he"), ("Kim", "bird", "she"),
    ("Jack", "frog", "he"), ("Anna", "girl", "she"), ("Tom", "boy", "he"), ("Sue", "pig", "she"),
    ("Dan", "fox", "he"), ("Ella", "cow", "she"), ("Joe", "goat", "he"), ("Amy", "lamb", "she"),
]
LOOKS = ["happy", "kind", "small", "brave", "funny", "shy", "busy", "curious"]
HOMES = [
    "in a small house near the woods", "on a big farm", "in a little house by the park",
    "in a cozy house on a hill", "near a big green tree", "in a small town", "by a quiet pond",
    "in a yellow house with a red door",
]
LIKES = [
    ("play with a red ball", "ball"), ("look at the flowers", "flowers"), ("read books", "books"),
    ("run in the grass", "grass"), ("sing songs", "songs"), ("draw pictures", "pictures"),
    ("eat apples", "apples"), ("jump in the rain", "rain"),
]
THINGS = [("ball", "red"), ("kite", "blue"), ("hat", "green"), ("toy car", "yellow"), ("doll", "pink"),
          ("book", "big"), ("cup", "little"), ("box", "brown")]
PLACES = ["the park", "the woods", "the garden", "the farm", "the pond", "the hill", "the field"]
SNACKS = ["an apple", "a cookie", "a cake", "some bread", "a banana", "some berries"]


def opening(name, kind, pro):
    a = c(*LOOKS)
    art = "an" if a[0] in "aeiou" else "a"
    first = c(
        f"Once upon a time, there was {art} {a} {kind} named {name}.",
        f"Once upon a time, there was a little {kind} named {name}.",
        f"One day, a little {kind} named {name} woke up early.",
    )
    home = c(*HOMES)
    like, _ = c(*LIKES)
    return [first, f"{pro.capitalize()} lived {home}.", f"{name} liked to {like}."]


def plot_lost(name, pro, friend):
    fname, fkind, fpro = friend
    thing, color = c(*THINGS)
    place = c(*PLACES)
    pos = "his" if pro == "he" else "her"
    return [
        f"One day, {name} went to {place} with {pos} {color} {thing}.",
        f"{name} played and played. Then {pro} looked for the {thing}, but it was gone!",
        f"{name} was sad. \"Where is my {thing}?\" {pro} said.",
        f"A {fkind} named {fname} came by. \"I will help you,\" said {fname}.",
        f"They looked under a tree and behind a rock.",
        c(f"At last, {fname} found the {thing} in the tall grass.",
          f"At last, they found the {thing} next to a big flower."),
        f"\"Thank you, {fname}!\" said {name}. {name} was happy again.",
    ]


def plot_share(name, pro, friend):
    fname, fkind, fpro = friend
    snack = c(*SNACKS)
    return [
        f"One morning, {name} had {snack} for a snack.",
        f"Then {name} saw a {fkind} named {fname}. {fname} looked very hungry.",
        f"{name} thought for a moment. \"Let's share it,\" {pro} said.",
        f"{name} gave half to {fname}. {fname} smiled a big smile.",
        f"\"Thank you, {name}!\" said {fname}.",
        c("Sharing made the snack taste even better.", "They ate together and talked about their day."),
    ]


def plot_rain(name, pro, friend):
    fname, fkind, fpro = friend
    return [
        f"One day, the sky was gray and it began to rain.",
        f"{name} could not go out to play. {pro.capitalize()} was a little sad.",
        f"Then {pro} heard a knock at the door. It was {pro_friend(fname, fkind)}.",
        c(f"\"Let's build a fort!\" said {fname}.", f"\"Let's draw a picture!\" said {fname}."),
        f"They had so much fun that they did not see the rain stop.",
        f"When the sun came out, they ran outside and jumped in the puddles.",
    ]


def pro_friend(fname, fkind):
    return f"a {fkind} named {fname}"


def plot_hill(name, pro, friend):
    fname, fkind, fpro = friend
    return [
        f"One day, {name} wanted to climb the big hill.",
        f"{name} asked {pro_friend(fname, fkind)} to come too.",
        f"The hill was very big. Halfway up, {name} was tired.",
        f"\"We can do it,\" said {fname}. \"One step at a time.\"",
        f"They walked and walked, and at last they were at the top.",
        c("They could see the whole town from there.", "They could see the trees and the fields from there."),
        f"\"We did it!\" said {name}. They sat in the sun and smiled.",
    ]


def plot_seed(name, pro, friend):
    fname, fkind, fpro = friend
    flower = c("red", "yellow", "blue", "pink")
    return [
        f"One spring day, {name} found a little seed.",
        f"{pro.capitalize()} put the seed in the ground and gave it water.",
        f"Every day, {name} looked at the ground, but nothing was there.",
        f"\"Be patient,\" said {pro_friend(fname, fkind)}. \"Good things take time.\"",
        f"One morning, {name} saw a small green plant.",
        f"Soon it grew into a big {flower} flower.",
        f"{name} and {fname} were very happy. They sat by the flower every day.",
    ]


def plot_new_friend(name, pro, friend):
    fname, fkind, fpro = friend
    place = c(*PLACES)
    return [
        f"One day, {name} went to {place}.",
        f"There {pro} saw {pro_friend(fname, fkind)} sitting alone.",
        f"{fname} looked shy. {name} walked over and said, \"Hello! Do you want to play?\"",
        f"{fname} smiled. \"Yes, please!\" {fpro} said.",
        c("They played tag and ran around the trees.", "They played with a ball until the sun went down."),
        f"From that day on, {name} and {fname} were best friends.",
    ]


PLOTS = [plot_lost, plot_share, plot_rain, plot_hill, plot_seed, plot_new_friend]


def ending(name, pro):
    return [c(
        f"That night, {name} went to bed with a smile.",
        f"It was a very good day.",
        f"{name} learned that friends make everything better.",
        f"And they all lived happily ever after.",
    )]


def story():
    hero = c(*CHARACTERS)
    friend = c(*[ch for ch in CHARACTERS if ch[0] != hero[0]])
    name, kind, pro = hero
    parts = opening(name, kind, pro) + c(*PLOTS)(name, pro, friend) + ending(name, pro)
    return " ".join(parts)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    stories = [story() for _ in range(N_TRAIN + N_VAL)]
    for s in stories:  # the corpus must not teach what the Pip corpus teaches
        for banned in ("Pip", "pip", "mouse", "lighthouse", "sea"):
            assert banned not in s.split() and banned not in s, (banned, s)
    for name, part in (("small_tales.txt", stories[:N_TRAIN]), ("small_tales.val.txt", stories[N_TRAIN:])):
        with open(os.path.join(here, name), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(part) + "\n")
    print(f"wrote {N_TRAIN} + {N_VAL} stories to {here}", file=sys.stderr)


if __name__ == "__main__":
    main()
