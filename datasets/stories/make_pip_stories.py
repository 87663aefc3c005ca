# Generator for the "Pip the lighthouse mouse" story corpus (pip_the_lighthouse_mouse.txt / .val.txt); seeded, reproducible.
#
# Written for QLoRA Studio; free to use under the project's license.
#
# Every story is built from a hand-written plot (see PLOTS below) with a friend, small details and
# phrasing picked by a seeded random generator. Pip, his lighthouse by the sea and his blue hat are in
# every story. Run from anywhere:
#
#     python3 datasets/stories/make_pip_stories.py
#
# It rewrites both files next to this script; the same seed always gives the same bytes.

import os
import random
import re
import sys

SEED = 260
N_TRAIN = 300
N_VAL = 30
MIN_WORDS = 60
MAX_WORDS = 150
MAX_OVERLAP = 0.55  # most word triples a story may share with any other

R = random.Random(SEED)


def c(*opts):
    """Pick one of the given options."""
    return R.choice(opts)


def maybe(p, text):
    return text if R.random() < p else ""


# ---------------------------------------------------------------------------------------------
# Friends: name, kind, pronoun, tags, describing words for the first mention.
#   water: lives in the water only     land: can walk on the beach and come into the lighthouse
#   fly: can fly     swim: can swim     big: bigger than a mouse     tiny: smaller than a mouse
#   kid: a child from the town by the sea
# ---------------------------------------------------------------------------------------------

FRIEND_DATA = [
    ("Sandy", "crab", "she", "land swim", ["little red", "small", "kind"]),
    ("Ned", "crab", "he", "land swim", ["little", "funny", "small red"]),
    ("Finn", "fish", "he", "water swim", ["little orange", "small", "shiny"]),
    ("Goldie", "fish", "she", "water swim", ["little gold", "pretty", "small"]),
    ("Ollie", "octopus", "he", "water swim", ["little", "friendly", "pink"]),
    ("Tess", "turtle", "she", "land swim big", ["old", "slow", "kind green"]),
    ("Sammy", "seal", "he", "land swim big", ["baby", "happy", "gray"]),
    ("Gus", "seagull", "he", "land fly big", ["big white", "noisy", "kind"]),
    ("Bella", "bird", "she", "land fly", ["little brown", "small", "happy"]),
    ("Pete", "puffin", "he", "land fly swim big", ["funny", "little", "black and white"]),
    ("Dot", "duck", "she", "land fly swim big", ["little yellow", "small", "happy"]),
    ("Olive", "owl", "she", "land fly big", ["wise", "old", "sleepy"]),
    ("Max", "puppy", "he", "land big", ["brown", "happy", "little"]),
    ("Rosie", "bunny", "she", "land big", ["white", "soft", "little"]),
    ("Tom", "cat", "he", "land big", ["kind", "fluffy orange", "gentle"]),
    ("Hop", "frog", "he", "land swim", ["green", "little", "jumpy"]),
    ("Molly", "mouse", "she", "land", ["gray", "little", "brave"]),
    ("Benny", "bear", "he", "land big", ["big brown", "friendly", "young"]),
    ("Kiki", "squirrel", "she", "land", ["red", "busy", "little"]),
    ("Lulu", "ladybug", "she", "land fly tiny", ["tiny", "little red", "small"]),
    ("Sid", "snail", "he", "land tiny", ["tiny", "slow", "little"]),
    ("Mia", "girl", "she", "land kid big", ["little", "kind", "happy"]),
    ("Ben", "boy", "he", "land kid big", ["little", "kind", "happy"]),
    ("Lucy", "girl", "she", "land kid big", ["little", "happy", "young"]),
    ("Tim", "boy", "he", "land kid big", ["little", "young", "happy"]),
    ("Anna", "girl", "she", "land kid big", ["little", "kind", "young"]),
    ("Jack", "boy", "he", "land kid big", ["little", "happy", "kind"]),
    ("Zoe", "girl", "she", "land kid big", ["little", "young", "happy"]),
    ("Leo", "boy", "he", "land kid big", ["little", "young", "kind"]),
]


class Friend:
    def __init__(self, name, kind, pron, tags, adjs):
        self.n = name
        self.kind = kind
        self.tags = set(tags.split())
        self.adjs = adjs
        if pron == "he":
            self.he, self.him, self.his = "he", "him", "his"
        else:
            self.he, self.him, self.his = "she", "her", "her"
        self.He = self.he.capitalize()
        self.His = self.his.capitalize()

    def new_story(self):
        adj = R.choice(self.adjs)
        art = "an" if adj[0] in "aeiou" else "a"
        self.a = f"{art} {adj} {self.kind} named {self.n}"
        self.A = self.a[0].upper() + self.a[1:]
        # "the" form used after the first mention, now and then
        self.the = self.n if "kid" in self.tags else f"{self.n} the {self.kind}"

    def has(self, *tags):
        return all(t in self.tags for t in tags)


FRIENDS = [Friend(*d) for d in FRIEND_DATA]


def land(f):
    return "land" in f.tags


def land_not_tiny(f):
    return "land" in f.tags and "tiny" not in f.tags


def kid(f):
    return "kid" in f.tags


def anyone(f):
    return True


# ---------------------------------------------------------------------------------------------
# Openings. Most begin "Once upon a time, there was a little mouse named Pip."
# ---------------------------------------------------------------------------------------------

HOME_AND_HAT = [
    "He lived in a tall lighthouse by the sea, and he always wore his blue hat.",
    "He lived at the top of a tall white lighthouse by the sea. He had a little blue hat that he wore every day.",
    "Pip lived in a lighthouse by the sea. He wore a small blue hat on his head.",
    "His home was a tall lighthouse by the sea. He loved his blue hat very much.",
    "Pip lived in a white lighthouse next to the sea, and he had a soft blue hat.",
    "He had a blue hat, and he lived in a tall lighthouse by the sea.",
    "Every day, Pip wore his blue hat. He lived in a big white lighthouse by the sea.",
    "He lived in a lighthouse by the sea. On his head, he wore a little blue hat.",
]

HAT_ONLY = [
    "He always wore a little blue hat.",
    "He had a small blue hat that he loved.",
    "Pip wore a blue hat every day.",
    "He had a soft blue hat on his head.",
    "His favorite thing was his little blue hat.",
]

HOME_ONLY = [
    "He lived in a tall lighthouse by the sea.",
    "His home was a big white lighthouse by the sea.",
    "He lived at the top of a lighthouse next to the sea.",
]

EXTRA = [
    "Every night, Pip helped the big light shine so the boats could find their way home.",
    "From his little window, he could see the sea all day long.",
    "He liked to hear the waves go splash, splash, splash on the rocks.",
    "At night, the big light at the top of the lighthouse went round and round.",
]


def opening():
    k = R.random()
    if k < 0.62:
        s = ["Once upon a time, there was a little mouse named Pip.", c(*HOME_AND_HAT)]
    elif k < 0.70:
        s = ["Once upon a time, there was a small mouse named Pip.", c(*HOME_AND_HAT)]
    elif k < 0.82:
        s = ["Once upon a time, there was a little mouse named Pip who lived in a lighthouse by the sea.",
             c(*HAT_ONLY)]
    elif k < 0.92:
        s = ["Once upon a time, in a tall lighthouse by the sea, there lived a little mouse named Pip.",
             c(*HAT_ONLY)]
    else:
        s = ["Once upon a time, there was a little mouse named Pip. He had a blue hat and a big heart.",
             c(*HOME_ONLY)]
    if R.random() < 0.15:
        s.append("~" + c(*EXTRA))
    return s


# ---------------------------------------------------------------------------------------------
# Plots. Each takes a friend and returns a list of sentences.
# ---------------------------------------------------------------------------------------------

PLOTS = []


def plot(ok):
    def reg(fn):
        PLOTS.append((fn.__name__, fn, ok))
        return fn
    return reg


@plot(kid)
def storm_boat(f):
    rel = c("dad", "mom", "grandpa")
    return [
        c("One night, a big storm came over the sea.",
          "One night, the sky got very dark, and a big storm came.",
          "One evening, the wind began to blow hard, and the rain came down."),
        "~" + c("The wind went whoosh, and the waves were very big.",
          "The rain went tap, tap, tap on the windows.",
          "The waves crashed on the rocks. Splash! Splash!"),
        f'''Out on the water, there was a small boat. In the boat was {f.a} with {f.his} {rel}.''',
        "They could not see the way home.",
        c("Pip put on his blue hat and ran up, up, up the stairs.",
          "Pip ran all the way up to the top of the lighthouse."),
        "~" + c("He helped the big light shine as bright as it could.",
          "He made the big light turn and shine over the water."),
        f'''{f.n} saw the light. "Look, {rel.capitalize()}! That is the way home!" {f.he} said.''',
        "The little boat came safe to the shore.",
        c(f'''The next day, {f.n} came to the lighthouse with a big piece of cheese. "Thank you, Pip," {f.he} said. Pip smiled under his blue hat.''',
          "Pip felt warm and happy inside. His light had helped a friend get home.",
          f'''The next morning, {f.n} came to say thank you. From that day on, {f.n} and Pip were best friends.'''),
    ]


@plot(land_not_tiny)
def storm_shelter(f):
    food = c("warm soup", "hot milk", "bread and cheese", "warm tea")
    return [
        c("One day, the sky turned gray, and the wind began to blow hard.",
          "One afternoon, big dark clouds came over the sea.",
          "One day, a storm came. The rain fell and the wind was loud."),
        f'''Pip looked out of his window. Down on the beach, he saw {f.a}. {f.He} was cold and wet.''',
        c(f'''Pip ran down the stairs and opened the door. "Come in, {f.n}! You can stay here," he said.''',
          f'''Pip opened the little door of the lighthouse. "Come inside where it is warm!" he called.'''),
        f'''{f.n} came in and shook off the rain. Pip gave {f.him} a soft blanket and some {food}.''',
        "~" + c("They sat together and listened to the rain on the windows.",
          "They told funny stories while the wind blew outside.",
          "They played a little game until the storm was over."),
        "~" + c("When the sun came out, the sea was calm again.",
          "Soon the rain stopped, and the sun came back."),
        c(f'''"Thank you for sharing your home, Pip," said {f.n}.''',
          f'''{f.n} gave Pip a big hug. "You are a good friend," {f.he} said.'''),
        "~" + c("Pip smiled. A home is even better when you share it.",
          "Pip was glad he could help. Friends take care of each other."),
    ]


@plot(anyone)
def lost_hat_wind(f):
    s = [
        c("One windy day, Pip went for a walk on the beach.",
          "One day, the wind was very strong. Pip went out to look at the waves.",
          "One morning, Pip went down to the sand to play."),
        c("Whoosh! The wind blew his blue hat right off his head!",
          "Suddenly, a big gust of wind came. It took Pip's blue hat away!"),
    ]
    if f.has("water"):
        s += [
            "The hat flew up and landed in the sea.",
            "~" + c('''"Oh no! My hat!" cried Pip. He could not swim out so far.''',
              '''"My blue hat!" Pip cried. He was very sad.'''),
            f'''Just then, {f.a} swam up. "Don't be sad, Pip. I will get it," {f.he} said.''',
            f'''{f.n} swam to the hat and pushed it back to the shore with {f.his} nose.''' if f.kind != "octopus"
            else f'''{f.n} took the hat with one long arm and swam back to the shore.''',
        ]
    elif f.has("fly"):
        s += [
            "The hat flew up, up, up and landed on a high rock.",
            "~" + '''"Oh no! My hat!" cried Pip. The rock was too high for a little mouse.''',
            f'''Just then, {f.a} came flying by. "I will help you, Pip!" {f.he} said.''',
            f'''{f.n} flew up to the rock and came back with the blue hat.''',
        ]
    elif f.has("swim"):
        s += [
            "The hat fell into the water near the rocks.",
            "~" + '''"Oh no! My hat!" cried Pip. The water was too deep for him.''',
            f'''Just then, {f.a} came by. "I can swim! I will get it," {f.he} said.''',
            f'''{f.n} jumped into the water and came back with the blue hat.''',
        ]
    else:
        place = c("into a big bush", "under an old boat", "behind a tall pile of rocks")
        s += [
            f'''The hat rolled far away and went {place}.''',
            "~" + '''"Oh no! My hat!" cried Pip. He could not find it.''',
            f'''Just then, {f.a} came by. "Don't worry, Pip. I will help you look," {f.he} said.''',
            f'''They looked and looked. At last, {f.n} found the blue hat and gave it back.''',
        ]
    s += [
        c("Pip put his hat back on. It was a little wet, but he did not mind.",
          "Pip put the hat back on his head and smiled a big smile."),
        c(f'''"Thank you, {f.n}! You are a true friend," said Pip.''',
          f'''"Thank you so much!" said Pip. {f.n} was happy to help.'''),
        "~" + c("From that day on, Pip held his hat tight when the wind blew.",
          "After that, Pip always held on to his hat on windy days.",
          ""),
    ]
    return s


@plot(land_not_tiny)
def picnic(f):
    pip_food = c("some cheese", "a little bread", "two red apples", "a bag of seeds")
    f_food = c("cookies", "grapes", "a big carrot", "some berries", "a piece of cake")
    twist = R.randrange(3)
    s = [
        c(f'''One sunny day, Pip and {f.a} went to the beach for a picnic.''',
          f'''One warm morning, Pip asked {f.a} to come on a picnic by the sea.'''),
        f'''Pip brought {pip_food}, and {f.n} brought {f_food}.''',
        c("They put a red blanket on the sand and sat down.",
          "They found a nice spot near the lighthouse and sat on a soft blanket."),
        "~" + c("They ate and talked and watched the waves.",
          "The sun was warm, and the food was very good."),
    ]
    if twist == 0:
        s += ["Then a big wave came up the sand. Splash! The blanket got all wet.",
              "~" + f'''Pip and {f.n} looked at each other. Then they began to laugh.''',
              '''"Let's move up a little!" said Pip.''']
    elif twist == 1:
        s += ["Then a hungry seagull flew down and took one of the cookies!" if f_food == "cookies"
              else "Then a hungry seagull flew down and looked at their food.",
              f'''"Hey!" said {f.n}. Pip laughed. "He is hungry too. Let's share."''',
              "So they gave the seagull some food, and it flew away happy."]
    else:
        s += ["Then they saw a line of little ants walking to the blanket.",
              '''"They want a picnic too!" said Pip.''',
              "Pip gave the ants a tiny crumb, and they carried it away."]
    s.append(c("It was the best picnic ever.",
               f'''When the sun went down, Pip and {f.n} walked back to the lighthouse, happy and full.''',
               "Pip fixed his blue hat and smiled. It was a very good day."))
    return s


@plot(land)
def sandcastle(f):
    return [
        c(f'''One day, Pip and {f.a} played on the beach.''',
          f'''One sunny morning, {f.a} came to the lighthouse. "Let's play in the sand!" {f.he} said.'''),
        c("They wanted to make a big sand castle.",
          "They decided to build a sand castle."),
        c('''"Let's make it tall, like my lighthouse!" said Pip.''',
          '''Pip said, "Let's make it look just like my lighthouse!"'''),
        "~" + c("They dug and patted and built.",
          "They worked hard. They used wet sand and little sticks."),
        "At the top, Pip put a small blue shell. " +
        c('''"Look! It has a blue hat, just like me!" he said.''',
          '''"Now it has a blue hat too!" he laughed.'''),
        "Then a big wave came. Whoosh! The sand castle was gone.",
        f'''{f.n} was sad. "Our castle!" {f.he} said.''',
        c('''"That is okay," said Pip. "We can make a new one."''',
          '''Pip gave his friend a hug. "Don't be sad. We can build it again!"'''),
        c("So they built a new castle, far away from the water.",
          "This time, they built the castle high up on the dry sand."),
        "~" + c("It was even bigger than the first one.",
          "The waves could not reach it, and it stood tall all day."),
        "~" + c("Pip learned that when something goes wrong, you can always try again.",
          ""),
    ]


@plot(land)
def shell_gift(f):
    shell = c("a pink shell", "a round white shell", "a shiny shell with stripes", "a tiny shell shaped like a star",
              "a purple shell")
    why = R.randrange(3)
    s = [
        c("One morning, Pip went for a walk by the sea.",
          "One day, Pip was looking for shells on the sand.",
          "Early one morning, Pip put on his blue hat and went down to the beach."),
        f'''He found {shell}. It was very pretty.''',
    ]
    if why == 0:
        s += [f'''Pip thought of his friend, {f.a}. {f.He} was sad today.''',
              "~" + f'''"This shell will make {f.n} smile," said Pip.''']
    elif why == 1:
        s += [f'''Pip thought of his friend, {f.a}. Today was {f.his} birthday!''',
              "~" + '''"This will be a good gift," said Pip.''']
    else:
        s += [f'''Pip thought of his friend, {f.a}. {f.He} loved pretty things.''',
              "~" + '''"I want to give this to my friend," said Pip.''']
    s += [
        c(f'''He ran to find {f.n} and gave {f.him} the shell.''',
          f'''He went to see {f.n} and held out the shell.'''),
        c(f'''"For me?" said {f.n}. "Thank you, Pip! I love it!"''',
          f'''{f.n}'s eyes got big. "Oh, it is so pretty! Thank you!"'''),
        "~" + c('''Pip said, "If you hold it to your ear, you can hear the sea."''',
          f'''{f.n} held the shell up to the sun. It was shiny and bright.'''),
        c("Pip felt happy inside. Giving is a very nice feeling.",
          f'''{f.n} kept the shell forever, and {f.he} always thought of Pip when {f.he} looked at it.''',
          "Pip walked home to his lighthouse with a big smile."),
    ]
    return s


@plot(land_not_tiny)
def lost_toy(f):
    toy = c("red ball", "yellow kite", "teddy bear", "little toy boat", "green truck", "doll")
    where = c("behind a big rock", "in the tall grass", "under the old dock", "next to a fishing boat")
    return [
        c(f'''One day, Pip saw {f.a} sitting on the sand.''',
          f'''One afternoon, Pip heard someone crying near the lighthouse. It was {f.a}.'''),
        c(f'''{f.He} was crying. "I lost my {toy}," {f.he} said.''',
          f'''"What is wrong?" asked Pip. "I can't find my {toy}," said {f.n}.'''),
        '''"Don't cry. I will help you," said Pip.''',
        "~" + c("They looked on the beach. They looked by the water. But they could not find it.",
          "They looked under the rocks and in the sand, but it was not there."),
        "Then Pip had an idea.",
        c('''"I can see very far from the top of my lighthouse!" he said.''',
          '''"Let's go up to the top of the lighthouse. We can see everything from there!"'''),
        "He ran up all the stairs and looked out of the big window.",
        f'''There it was! The {toy} was {where}.''',
        "~" + f'''Pip ran back down and showed {f.n} the way.''',
        c(f'''{f.n} picked up the {toy} and hugged it. "Thank you, Pip!" {f.he} said.''',
          f'''{f.n} was so happy. {f.He} jumped up and down. "You found it, Pip!"'''),
        "~" + c("Pip tipped his blue hat and smiled.",
          "Pip was glad. Helping a friend made him feel good."),
    ]


@plot(land_not_tiny)
def scared_dark(f):
    return [
        c(f'''One evening, {f.a} came to stay at the lighthouse.''',
          f'''One night, Pip's friend, {f.a}, slept over at the lighthouse.'''),
        "~" + c("When the sun went down, it got very dark.",
          "Soon it was night, and the sky was black."),
        f'''{f.n} was scared. "I do not like the dark," {f.he} said in a small voice.''',
        c('''"Come with me," said Pip. "I want to show you something."''',
          '''Pip took his friend by the hand. "Don't be scared. Follow me!"'''),
        c("They walked up the long stairs, all the way to the top.",
          "Step by step, they went up to the top of the lighthouse."),
        "There was the big light. It was bright and warm, and it went round and round.",
        c('''"This light keeps the boats safe at night," said Pip. "It keeps us safe too."''',
          '''"The light is here every night," said Pip. "It helps the boats and it helps us."'''),
        "~" + f'''{f.n} looked out at the sea. {f.He} could see the boats and the stars.''',
        c('''"The dark is not so scary now," said ''' + f.n + ".",
          f'''{f.n} smiled. "I am not scared anymore."'''),
        "~" + c("That night, they both slept well under the big light.",
          f'''Pip put his blue hat on the chair, and the two friends went to sleep.'''),
    ]


@plot(land_not_tiny)
def birthday_friend(f):
    cake = c("a little cake", "a small round cake", "a cake with berries on top")
    guests = c("Gus the seagull and Sandy the crab", "a duck and a bunny", "all their friends from the beach",
               "the birds and the crabs")
    if f.n in guests:
        guests = "all their friends from the beach"
    return [
        c(f'''One day, Pip woke up and said, "Today is {f.n}'s birthday!"''',
          f'''It was a special day. It was the birthday of Pip's friend, {f.a}.'''),
        "~" + c("Pip wanted to make the day very special.",
          "Pip wanted to give his friend a happy surprise."),
        f'''Pip made {cake} and put one candle on it.''',
        c(f'''He asked {guests} to come to the lighthouse.''',
          f'''He told {guests} about the party.'''),
        c(f'''When {f.n} came in, everyone said, "Surprise! Happy birthday!"''',
          f'''When {f.n} opened the door, everyone shouted, "Happy birthday!"'''),
        f'''{f.n} was so happy. {f.He} made a wish and blew out the candle.''',
        "~" + c("They ate cake and played games by the sea.",
          "They sang songs and danced until the sun went down."),
        c(f'''"This is my best birthday ever," said {f.n}. "Thank you, Pip!"''',
          f'''"Thank you, Pip," said {f.n}. "You are the best friend in the world."'''),
        "~" + c("Pip smiled under his blue hat. Making a friend happy made him happy too.",
          "Pip was very happy. It was a wonderful day."),
    ]


@plot(land_not_tiny)
def pip_birthday(f):
    gift = c("a new blue ribbon for his hat", "a little bell", "a big piece of yellow cheese",
             "a pretty feather for his blue hat", "a tiny blue scarf to match his hat")
    return [
        c("One morning, Pip woke up and remembered that it was his birthday.",
          "It was Pip's birthday, but no one said a word about it."),
        "~" + c("He went down to the beach, but no one was there.",
          "He looked for his friends, but he could not find them."),
        c('''"Did everyone forget my birthday?" Pip said. He felt a little sad.''',
          '''Pip sat on a rock. "Maybe they forgot," he said softly.'''),
        c("He walked slowly back to his lighthouse and opened the door.",
          "When the sun was low, he went home to his lighthouse."),
        '''"Surprise!" shouted all his friends.''',
        f'''{f.A} was there with a big cake. There were flowers and balloons.''',
        f'''"Happy birthday, Pip!" said {f.n}. {f.He} gave him {gift}.''',
        "~" + c("Pip was so happy that he jumped up and down.",
          "Pip laughed and hugged everyone."),
        c('''"You did not forget!" said Pip.''',
          '''"This is the best day ever!" said Pip.'''),
        "~" + c("They ate cake and played until the stars came out.",
          "That night, the big light of the lighthouse shone on a very happy little mouse."),
    ]


@plot(land_not_tiny)
def kite(f):
    color = c("red", "yellow", "green", "orange", "rainbow")
    a_kite = ("an " if color[0] in "aeiou" else "a ") + color + " kite"
    return [
        c(f'''One windy day, {f.a} came to the lighthouse with {a_kite}.''',
          f'''One day, the wind was just right. Pip and {f.a} took {a_kite} to the beach.'''),
        c('''"Let's fly it!" said Pip.''', f'''"Can we fly it now?" asked Pip. "Yes!" said {f.n}.'''),
        "The kite went up, up, up into the sky. It danced in the wind.",
        c("Then the wind blew very hard. The string slipped away!",
          "But then a big wind came, and they let go of the string."),
        "The kite flew to the lighthouse and got stuck at the very top.",
        f'''"Oh no!" said {f.n}. "We can't get it now."''',
        c('''"Yes, we can," said Pip. "I know the way up."''',
          '''Pip held on to his blue hat. "I will get it!" he said.'''),
        c("Pip ran up the stairs and out onto the little walk at the top.",
          "Pip climbed all the way up the lighthouse, step by step."),
        c("He pulled the kite free and carried the string back down.",
          "He held the string in his little paws and brought the kite back down."),
        c(f'''"You did it!" said {f.n}. They flew the kite again, and this time they held on tight.''',
          f'''{f.n} cheered. Then they flew the kite all afternoon, holding the string very tight.'''),
    ]


@plot(land_not_tiny)
def rainy_day(f):
    game = R.randrange(3)
    s = [
        c("One day, it rained and rained.", "One morning, the rain came down hard on the sea.",
          "It was a gray and rainy day."),
        f'''Pip and {f.a} could not play outside.''',
        "~" + f'''"What can we do?" asked {f.n}.''',
    ]
    if game == 0:
        s += ['''"Let's play hide and seek in the lighthouse!" said Pip.''',
              "~" + f'''{f.n} hid under the stairs, and Pip found {f.him} fast.''',
              "Then Pip hid in a little box. But his blue hat stuck out the top!",
              f'''"I see your hat, Pip!" laughed {f.n}.''']
    elif game == 1:
        s += ['''"Let's draw pictures!" said Pip.''',
              "~" + f'''Pip drew the sea and a big boat. {f.n} drew the lighthouse.''',
              f'''Then {f.n} drew a little mouse with a blue hat.''',
              '''"That is me!" said Pip, and they both laughed.''']
    else:
        s += ['''"Let's make a house with blankets!" said Pip.''',
              "They put blankets over two chairs and crawled inside.",
              "~" + "It was cozy and warm. They told stories and ate some crackers.",
              f'''"This is fun," said {f.n}. "I like rainy days now."''']
    s.append(c("Soon the rain stopped. Outside, there was a big rainbow over the sea.",
               "When the rain stopped, they ran outside to jump in the puddles.",
               "The rain went on all day, but they did not mind at all."))
    return s


@plot(land_not_tiny)
def snow_day(f):
    return [
        c("One winter morning, Pip looked out of his window.", "One cold day, Pip woke up early."),
        c("Everything was white! Snow was on the beach and on the rocks.",
          "Snow was falling on the sea and on the lighthouse."),
        c("Pip put on his blue hat and a warm coat and ran outside.",
          "Pip held his blue hat tight and ran down the stairs."),
        f'''{f.A} was already there, playing in the snow.''',
        c('''"Let's make a snow mouse!" said Pip.''', f'''"Let's make a snowman!" said {f.n}.'''),
        "They rolled a big ball of snow and a small one.",
        "~" + "They put two little stones on it for eyes.",
        c('''Then Pip put a small blue cup on top. "Now he has a blue hat, just like me!" said Pip.''',
          '''"It needs a hat," said Pip. He found a little blue bucket and put it on top.'''),
        f'''{f.n} laughed. "It looks just like you, Pip!"''',
        "~" + c("Soon their toes were cold, so they went inside and had warm milk.",
          "When they got cold, they ran back to the lighthouse to get warm."),
        "~" + c("It was a happy snowy day.", "They looked out the window at their snow friend until it was time for bed."),
    ]


@plot(land_not_tiny)
def stars(f):
    n = c("ten", "twenty", "a hundred")
    return [
        c(f'''One night, Pip and {f.a} went up to the top of the lighthouse.''',
          f'''One clear night, {f.a} came to visit Pip.'''),
        c("The sky was dark, and there were lots of stars.",
          "They looked out at the night sky. It was full of bright stars."),
        c(f'''"How many stars are there?" asked {f.n}. "Let's count them," said Pip. "One, two, three..."''',
          f'''"Let's count the stars!" said {f.n}. "One, two, three..." they began.'''),
        f'''They counted to {n}, but there were still more stars.''',
        c('''"There are too many to count!" Pip laughed.''',
          '''"We will never finish!" said Pip with a laugh.'''),
        c(f'''The moon came up over the sea. It made a silver road on the water. "I like being up here with you, Pip," said {f.n}.''',
          f'''A little star fell across the sky, and they both made a wish. "What did you wish for?" asked {f.n}. "I wished that we will always be friends," said Pip.''',
          f'''"I like being up here with you, Pip," said {f.n}.'''),
        "~" + c("They sat together under the stars until they fell asleep.",
          "Pip pulled his blue hat down over his ears, and they watched the sky until it was late."),
    ]


@plot(anyone)
def new_friend(f):
    if f.has("water"):
        where = c("in the water near the rocks", "in a little pool by the shore")
    else:
        where = c("on a rock by the water", "all alone on the sand", "near the lighthouse door")
    s = [
        c("One day, Pip went for a walk by the sea.", "One morning, Pip was sweeping the steps of his lighthouse."),
        f'''He saw {f.a} {where}. {f.He} looked sad.''',
        c('''"Hello!" said Pip. "I am Pip. I live in the lighthouse. What is your name?"''',
          '''Pip walked over and said, "Hi! My name is Pip. I live in that tall lighthouse."'''),
        f'''"I am {f.n}," said the {f.kind}. "I am new here. I do not have any friends."''',
        c('''"You do now!" said Pip with a smile.''',
          '''Pip smiled. "I will be your friend!"'''),
    ]
    if f.has("water"):
        s += [f'''Pip showed {f.n} his lighthouse from the shore, and {f.n} showed Pip the pretty fish under the water.''',
              "~" + "They talked and laughed all afternoon."]
    else:
        s += [f'''Pip showed {f.n} the beach, the rocks and the big light at the top of his lighthouse.''',
              "~" + "They played all day long."]
    s.append(c(f'''"I am so happy I met you, Pip," said {f.n}.''',
               f'''{f.n} was not sad anymore. {f.He} had a new friend.'''))
    s.append(c("Pip learned that a kind hello can make a big difference.",
               "From then on, they played together every day.", ""))
    return s


@plot(land_not_tiny)
def sharing(f):
    food = c("a big red strawberry", "a round cookie", "a sweet apple", "a piece of cheese", "a yellow banana")
    return [
        c(f'''One day, Pip found {food} on the kitchen table.''',
          f'''One morning, Pip had {food} for his snack.'''),
        "~" + c('''"Yum!" said Pip. He was about to eat it all.''', "He was very happy. It looked so good."),
        f'''Then {f.a} came to the lighthouse door. {f.He} looked very hungry.''',
        c(f'''"I have not had any food today," said {f.n}.''',
          f'''{f.n}'s tummy went grumble, grumble.'''),
        "~" + c("Pip looked at his snack. Then he looked at his friend.",
          "Pip wanted to keep it. But then he thought about his friend."),
        c('''He broke it into two pieces. "Here, this is for you," he said.''',
          '''"Let's share it," said Pip, and he gave half to his friend.'''),
        f'''{f.n} smiled a big smile. "Thank you, Pip!"''',
        "~" + "They sat on the steps of the lighthouse and ate together.",
        c('''"It tastes even better when we share," said Pip.''',
          "Pip was happy. Sharing made the snack taste even better."),
    ]


@plot(lambda f: not f.has("tiny"))
def little_boat(f):
    boat = c("an old box", "half of a walnut shell", "a big green leaf", "a little wooden board")
    s = [
        c("One sunny day, Pip wanted to sail on the water.", "One day, Pip wanted to go on a boat ride."),
        f'''He made a little boat out of {boat}.''',
        "He took it to a small pool of water by the rocks.",
    ]
    if f.has("water"):
        s += [f'''In the pool lived {f.a}. "Can I swim with you?" asked {f.n}.''',
              '''"Yes!" said Pip. So Pip sat in his boat, and his friend swam next to him.''']
    else:
        s += [f'''{f.A} came too. "Can I help?" asked {f.n}.''',
              f'''"Yes!" said Pip. Pip sat in the boat, and {f.n} gave it a little push.''']
    s += [
        "~" + c("The boat went round and round. They saw small fish and pretty shells under the water.",
          "The little boat went slowly across the pool. Pip could see tiny fish below."),
        c("Then a small wave came, and the boat tipped over. Splash! Pip fell in the water.",
          "Then Pip leaned too far to look at a fish. Splash! Into the water he went."),
        c(f'''{f.n} helped him out. Pip was all wet, and his blue hat was dripping. {f.n} began to laugh.''',
          f'''Pip climbed out, all wet. His blue hat was full of water. {f.n} began to laugh.'''),
        "Pip laughed too. " + c('''"That was a fun ride!" he said.''', '''"Let's go again!" he said.'''),
        "~" + c("They dried off in the warm sun and then sailed again.",
          "They played with the little boat until it was time to go home."),
    ]
    return s


@plot(land_not_tiny)
def lost_baby(f):
    baby = c("a baby duck", "a baby bird", "a tiny crab", "a baby turtle")
    mom = c("mom", "mama")
    return [
        c(f'''One day, Pip and {f.a} were playing by the sea.''',
          f'''One afternoon, Pip was walking on the beach with his friend, {f.a}.'''),
        c("They heard a small cry. Peep, peep!", "Then they heard a little sound behind a rock."),
        f'''It was {baby}. It was all alone.''',
        f'''"I can't find my {mom}," it said.''',
        c(f'''"Don't worry. We will help you," said Pip and {f.n}.''',
          f'''"We will help you find her," said {f.n}.'''),
        "~" + "They looked up and down the beach, but they did not see her.",
        c('''"I know!" said Pip. "I will look from the top of the lighthouse."''',
          "Pip had an idea. He ran up to the top of the lighthouse to look."),
        c("From up high, he saw the mom far away, looking for her baby.",
          "From the top, he could see the whole beach. There was the mom, near the big rocks!"),
        "~" + '''He ran back down. "Follow me!" he said.''',
        c("When the baby saw its mom, it ran to her. They hugged and hugged.",
          "The baby ran to its mom, and she gave it a big hug."),
        "~" + c('''"Thank you, little mouse in the blue hat!" said the mom.''',
          "The mom said thank you to Pip and his friend. They felt very happy."),
    ]


@plot(land_not_tiny)
def cleaning(f):
    return [
        c("One morning, Pip saw that his lighthouse was very dusty.",
          "One day, Pip looked at the big light. It was not very bright."),
        c('''"Oh no," said Pip. "The glass is dirty. The boats will not see the light."''',
          '''"The light needs to be clean and bright," said Pip. "But there is so much dust!"'''),
        f'''Just then, {f.a} came to visit.''',
        f'''"I will help you clean!" said {f.n}.''',
        "~" + c("Pip got a little broom, and his friend got a soft cloth.",
          "They found a bucket of water and two soft rags."),
        c("They swept the stairs. They washed the windows. They wiped the big glass until it was shiny.",
          "They cleaned every step, every window and every corner."),
        "~" + c("It was hard work, but they sang a song while they worked.",
          "It took all day, but they did not give up."),
        "That night, Pip turned on the big light. It shone very bright over the sea.",
        "~" + c("Far away, a little boat saw the light and found its way home.",
          "All the boats could see it from far away."),
        c(f'''"We did it!" said {f.n}. Pip smiled and took off his blue hat to wipe his head.''',
          '''"Thank you for helping me," said Pip. "Working together is more fun."'''),
    ]


@plot(land_not_tiny)
def painting(f):
    what = c("the lighthouse door", "a big picture of the sea", "the old fence by the lighthouse",
             "a sign for the lighthouse")
    paint = c("yellow", "red", "green", "white")
    return [
        f'''One sunny day, Pip wanted to paint {what}.''',
        f'''He had a little brush and a pot of {paint} paint.''',
        f'''{f.A} came by. "Can I help?" {f.he} asked.''',
        "~" + '''"Yes, please!" said Pip.''',
        c("They painted slowly and carefully.", "They dipped their brushes and painted and painted."),
        c(f'''Then {f.n} turned around fast, and {f.his} brush touched Pip's blue hat!''',
          f'''Then a drop of paint fell from the brush and landed on Pip's blue hat.'''),
        f'''Now there was a big {paint} spot on it.''',
        f'''"Oh no! I am sorry, Pip," said {f.n}.''',
        c('''Pip looked at his hat. Then he laughed. "It looks like a little sun!" he said.''',
          '''Pip was sad for a moment. Then he smiled. "It is okay. We can wash it."'''),
        "~" + c("They finished the painting together. It looked beautiful.",
          "When they were done, they stepped back and looked. It was very pretty."),
        "~" + c("Pip learned that little accidents are not a big problem when you have a good friend.",
          "It was a messy day, but a very happy one."),
    ]


@plot(anyone)
def song(f):
    s = [
        c("Pip loved to sing.", "Pip liked to sing songs to the sea."),
        c("Every morning, he sat at the top of his lighthouse and sang to the waves.",
          "One morning, he sat on a rock by the water and began to sing."),
        c('''"La, la, la, the sea is blue, my hat is blue, and I love you!" he sang.''',
          '''"Splash, splash, goes the sea, the sun is up, and I am me!" he sang.'''),
    ]
    if f.has("water"):
        s.append(f'''Then {f.a} jumped out of the water. "I love your song!" said {f.n}. "Can I sing too?"''')
        s.append(f'''So Pip sang, and {f.n} jumped and splashed to the music.''')
    elif f.has("fly"):
        s.append(f'''Then {f.a} flew down next to him. "I love your song!" said {f.n}. "Can I sing too?"''')
        s.append(f'''So they sang together. {f.n} sang high, and Pip sang low.''')
    else:
        s.append(f'''Then {f.a} came down to the water. "I love your song!" said {f.n}. "Can I sing too?"''')
        s.append(c(f'''So they sang together. {f.n} tapped two sticks, and Pip shook a shell.''',
                   f'''So they sang together, and {f.n} clapped to the music.'''))
    s += [
        "~" + c("The waves went splash, splash, like a big drum.", "Even the waves seemed to dance."),
        "~" + c("Soon more friends came to listen. The birds sang and the crabs danced.",
          "A seagull stopped to listen, and a crab tapped its claws."),
        c("It was the best song on the whole beach.",
          f'''Pip tipped his blue hat and bowed, and {f.n} clapped.''',
          "From then on, they sang together every morning."),
    ]
    return s


@plot(land_not_tiny)
def bottle(f):
    note = c('''"Hello! Will you be my friend?"''', '''"Hi! I live far away across the sea. Do you like the sea too?"''',
             '''"Hello, whoever finds this! Have a happy day!"''')
    return [
        c(f'''One morning, Pip and {f.a} were walking on the sand.''',
          f'''One day, Pip was playing by the water with {f.a}.'''),
        "They saw something shiny. It was a glass bottle!",
        "There was a little note inside.",
        "~" + c("Pip pulled the note out carefully.", f'''{f.n} helped Pip get the note out.'''),
        f'''It said, {note}''',
        "~" + c('''"Someone sent this across the sea!" said Pip.''',
          f'''"Wow! Who wrote it?" asked {f.n}.'''),
        c('''"Let's write back," said Pip.''', f'''"We should write back," said {f.n}.'''),
        "So they made a picture of the tall lighthouse and a little mouse with a blue hat.",
        c('''They wrote, "Hello from Pip the lighthouse mouse! Yes, we will be your friends!"''',
          '''They wrote, "Hello from the lighthouse by the sea! We hope you are happy too!"'''),
        "They put the note in the bottle and threw it into the waves.",
        "~" + c("They watched it float far, far away.",
          "The bottle bobbed up and down and went out to sea."),
        "~" + c('''"I hope our new friend finds it," said Pip.''', "Pip waved goodbye to the bottle."),
    ]


@plot(land_not_tiny)
def stairs_race(f):
    n = c("one hundred", "so many", "lots and lots of")
    return [
        c(f'''One day, {f.a} came to visit Pip.''', f'''One morning, Pip's friend, {f.a}, came to the lighthouse.'''),
        f'''The lighthouse had {n} stairs.''',
        f'''"Let's race to the top!" said {f.n}.''',
        c('''"Okay!" said Pip. He held his blue hat and said, "Ready, set, go!"''',
          '''"Ready, set, go!" said Pip.'''),
        f'''{f.n} ran very fast at first. {f.He} was far ahead.''',
        f'''But soon {f.n} got tired and had to sit down.''',
        "~" + "Pip did not run fast. He went step by step, not too fast and not too slow.",
        f'''When Pip came to {f.n}, he stopped. "Let's go up together," he said.''',
        "~" + "So they went up the rest of the stairs side by side.",
        c("At the top, they looked out at the blue sea. It was so pretty.",
          "At the top, they could see the boats, the birds and the whole sea."),
        c(f'''"Who won?" asked {f.n}. "We both did!" said Pip.''',
          '''"Going together is better than winning," said Pip.'''),
    ]


@plot(land_not_tiny)
def friend_wants_hat(f):
    hat = c("a red leaf", "a little yellow cup", "an old green sock", "a big pink shell", "a piece of orange cloth")
    color = hat.split()[-2]
    color = ("an " if color[0] in "aeiou" else "a ") + color
    return [
        c(f'''One day, {f.a} looked at Pip's blue hat.''', f'''Pip had a friend, {f.a}.'''),
        c(f'''"I love your hat," said {f.n}. "Can I have it?"''',
          f'''{f.He} loved Pip's blue hat. "I wish I had a hat like that," {f.he} said.'''),
        "Pip did not want to give away his hat. It was his favorite thing.",
        "~" + c("But he did not want his friend to be sad.", "But he wanted to help his friend."),
        c('''"I have an idea," said Pip. "Let's make you a hat of your own!"''',
          '''Pip thought and thought. Then he smiled. "We can make a hat for you!"'''),
        f'''They found {hat} on the beach.''',
        "~" + c("Pip cut it and folded it. His friend helped.", "They worked together to make it just right."),
        f'''Soon it was a hat! {f.n} put it on. It fit just right.''',
        f'''"Now we both have hats!" said {f.n}. "I have {color} hat, and you have a blue hat!"''',
        "~" + c("They walked along the beach in their hats, and everyone smiled at them.",
          "They looked in the water and laughed at the two friends in their hats."),
    ]


@plot(land_not_tiny)
def hurt_friend(f):
    part = "wing" if f.has("fly") else c("foot", "leg") if not f.kind == "crab" else "claw"
    if f.kind in ("puppy", "bunny", "cat", "bear", "squirrel", "mouse"):
        part = "paw"
    if f.kind == "seal":
        part = "flipper"
    return [
        c(f'''One day, Pip was walking by the rocks when he saw {f.a}.''',
          f'''One afternoon, Pip heard a little cry near the lighthouse. It was {f.a}.'''),
        f'''{f.He} had hurt {f.his} {part} on a sharp rock.''',
        "~" + f'''"Ouch, ouch," said {f.n}. "It hurts."''',
        c('''"I will help you," said Pip. He gave his friend a little hug.''',
          '''"Don't worry," said Pip. "I will take care of you."'''),
        f'''Pip helped {f.n} walk slowly to the lighthouse.''',
        c(f'''He washed the {part} with clean water and put a soft cloth on it.''',
          f'''He put a little bandage on the {part}.'''),
        "~" + f'''Then he made {f.n} a cozy bed by the window and gave {f.him} some warm soup.''',
        c(f'''"You need to rest," said Pip. {f.n} closed {f.his} eyes and went to sleep.''',
          f'''"Thank you, Pip," said {f.n}. "You are so kind."'''),
        c(f'''The next day, {f.n}'s {part} felt much better.''',
          f'''In a few days, the {part} was all better.'''),
        "~" + c("They went out to play on the beach again, and Pip wore his blue hat.",
          f'''{f.n} said, "When you need help, I will help you too, Pip."'''),
    ]


@plot(lambda f: f.has("swim") or f.has("fly") or f.has("kid"))
def waves_lesson(f):
    rescue = (f'''{f.n} swam fast and brought the hat back to the shore.''' if f.has("swim")
              else f'''{f.n} flew over the water and picked up the hat.''' if f.has("fly")
              else f'''{f.n} waded into the water and picked up the hat.''')
    return [
        c(f'''One day, Pip went down to the beach with {f.a}.''',
          f'''One morning, Pip wanted to play in the waves. His friend, {f.a}, was there too.'''),
        "The waves were very big that day.",
        f'''"Be careful, Pip," said {f.n}. "Do not go too close to the water."''',
        c('''But Pip did not listen. "I want to play in the waves!" he said.''',
          '''"I will be fine," said Pip.'''),
        "He ran close to the water. Then a big wave came. Whoosh!",
        "The wave knocked Pip down, and his blue hat floated away on the water.",
        "~" + '''"Help! My hat!" cried Pip.''',
        rescue,
        c('''Pip was wet and cold. "I am sorry," he said. "I should have listened to you."''',
          '''Pip hugged his wet hat. "Thank you. Next time I will listen," he said.'''),
        "~" + c(f'''{f.n} smiled. "It is okay. I am glad you are safe."''',
          "From then on, Pip was always careful near the big waves."),
    ]


@plot(land_not_tiny)
def grumpy(f):
    why = c("lost my favorite toy", "had a bad dream", "fell in the mud", "could not find my mom this morning")
    return [
        c(f'''One morning, Pip went to play with {f.a}.''', f'''One day, Pip saw his friend, {f.a}, on the beach.'''),
        c(f'''But {f.n} was grumpy. "Go away," {f.he} said. "I do not want to play."''',
          f'''{f.n} looked very grumpy. {f.He} did not say hello.'''),
        "~" + c("Pip felt sad. But he did not go away.", "Pip did not get mad. He wanted to help."),
        c(f'''Pip found a pretty shell and gave it to {f.n}.''',
          f'''Pip sat down next to {f.n} and did not say anything. He just stayed close.'''),
        "~" + c('''Then he did a silly dance and made his blue hat fall off.''',
          '''Then he told a funny joke about a fish with a hat.'''),
        f'''{f.n} began to smile. Then {f.he} began to laugh.''',
        f'''"I am sorry, Pip," said {f.n}. "I was grumpy because I {why}."''',
        c('''"That is okay," said Pip. "Everyone feels grumpy sometimes."''',
          '''"I understand," said Pip. "Friends help each other feel better."'''),
        "~" + c("Then they played together all day, and nobody was grumpy anymore.",
          "They walked along the sea together, and soon it was a happy day."),
    ]


@plot(land)
def treasure(f):
    thing = c("a shiny gold button", "a little silver bell", "a round blue stone", "a tiny key", "a pretty red bead")
    use = {
        "a shiny gold button": "Pip sewed the gold button onto his blue hat. It looked very nice.",
        "a little silver bell": "Pip put the little bell on his blue hat. Now it went ding, ding when he walked!",
        "a round blue stone": "The stone was blue, just like Pip's hat. They put it in the window of the lighthouse.",
        "a tiny key": "The key opened a little box at the bottom of the lighthouse. Inside were old pictures of the sea.",
        "a pretty red bead": f'''Pip gave the red bead to {f.n}, and {f.n} kept it as a special gift.''',
    }[thing]
    return [
        c(f'''One day, Pip and {f.a} were digging in the sand.''',
          f'''One morning, {f.a} said, "Let's look for treasure!" Pip put on his blue hat, and they went to the beach.'''),
        c("They dug and dug. Then they found something hard.",
          "They dug a big hole. All at once, they heard a clink!"),
        "It was a small wooden box!",
        "~" + f'''"What is inside?" asked {f.n}.''',
        c("Pip opened the box slowly.", "Together, they opened the lid."),
        f'''Inside was {thing}.''',
        "~" + c('''"Treasure!" said Pip. "We found real treasure!"''', f'''"Wow!" said {f.n}. "It is so pretty!"'''),
        use,
        c("It was a happy day for the two treasure hunters.",
          "Pip said the best treasure of all was a friend to dig with."),
    ]


@plot(anyone)
def whale(f):
    s = [
        c("One morning, Pip was at the top of his lighthouse, looking at the sea.",
          "One sunny day, Pip sat on the rocks near his lighthouse."),
    ]
    if f.has("water"):
        s.append(f'''His friend, {f.a}, was swimming in the water below.''')
    elif f.has("tiny"):
        s.append(f'''His friend, {f.a}, sat on his shoulder.''')
    else:
        s.append(f'''His friend, {f.a}, was there too.''')
    s += [
        c("Then they saw something very big in the water.", "Far out in the sea, something big came up."),
        '''It was a whale! It was gray and huge.''',
        c('''"Hello, whale!" called Pip, and he waved his blue hat.''', '''Pip waved. "Hello, big whale!"'''),
        "The whale came closer. Then it blew water high into the air. Whoosh!",
        "The water came down like rain, right on Pip and his friend.",
        "~" + c("Pip's blue hat was all wet! He laughed and laughed.",
          f'''{f.n} laughed. "Your hat is wet, Pip!"'''),
        c("The whale seemed to smile. Then it swam away, slowly and gently.",
          "The whale waved its big tail and swam back out to sea."),
        "~" + c('''"Goodbye, whale! Come back soon!" said Pip.''',
          f'''"I hope we see the whale again," said {f.n}.'''),
        "~" + c("That night, Pip dreamed about the big gray whale.", ""),
    ]
    return s


@plot(land)
def garden(f):
    flower = c("yellow", "red", "pink", "purple", "orange")
    return [
        c("One spring day, Pip found a little seed.", "One day, Pip got a little seed from a friend."),
        '''"I will plant it next to my lighthouse," he said.''',
        "He dug a small hole, put the seed in, and gave it some water.",
        f'''{f.A} came by. "When will it grow?" {f.he} asked.''',
        "~" + '''"I don't know," said Pip. "We have to wait."''',
        c("Every day, Pip gave the seed water. Every day, he looked, but nothing was there.",
          "Pip waited and waited. Every morning, he gave it water and sun."),
        "~" + c('''"Maybe it will never grow," said ''' + f.n + ".",
          f'''{f.n} said, "Maybe the seed is sleeping."'''),
        "~" + '''"Let's keep trying," said Pip.''',
        c("Then one morning, they saw a tiny green leaf!", "One day, a little green stem came up out of the ground!"),
        f'''It grew and grew, and soon there was a big {flower} flower by the lighthouse door.''',
        c('''"It was worth the wait," said Pip, and he tipped his blue hat to the flower.''',
          f'''Pip and {f.n} smiled. Waiting was hard, but the flower was beautiful.'''),
    ]


@plot(land_not_tiny)
def moon_cheese(f):
    return [
        c(f'''One night, Pip and {f.a} sat on the steps of the lighthouse.''',
          f'''One evening, {f.a} came to visit Pip at the lighthouse.'''),
        "A big, round, yellow moon came up over the sea.",
        c('''Pip looked at it. "Look! It is a big piece of cheese!" he said.''',
          '''"Wow," said Pip. "Is the moon made of cheese?"'''),
        f'''{f.n} laughed. "No, Pip. The moon is not cheese. It is very, very far away in the sky."''',
        "~" + c('''"Oh," said Pip. "But it looks so yummy."''', '''Pip rubbed his tummy. "It makes me hungry," he said.'''),
        c("So they went inside and ate a little bit of real cheese.",
          f'''{f.n} smiled. "Let's have a real snack," {f.he} said.'''),
        "~" + c("Then they went back out and looked at the moon.",
          "After the snack, they sat by the window and looked at the moon on the water."),
        c('''"Good night, moon," said Pip, and he put his blue hat on the table.''',
          f'''"Good night, cheese moon," said {f.n} with a giggle.'''),
        "~" + c("Pip went to sleep and dreamed of a sky full of cheese.", "It was a happy night."),
    ]


@plot(land)
def hot_day(f):
    return [
        c("One summer day, it was very hot.", "It was a hot, hot day by the sea."),
        "~" + c("The sun was big and bright in the sky.", "The sand was so hot that it hurt Pip's feet."),
        c("Pip was glad he had his blue hat. It kept the sun off his head.",
          "Pip pulled his blue hat down low to keep the sun out of his eyes."),
        f'''{f.A} was very hot too. "I need some shade," {f.he} said.''',
        c('''"Let's go sit by the lighthouse," said Pip.''',
          '''"Come with me," said Pip. "The lighthouse makes a big shadow."'''),
        "They sat in the cool shade of the tall lighthouse.",
        c("Then they went down to the water and put their feet in the waves.",
          "Later, they splashed in a little pool of cool water."),
        "~" + c('''"Ahh, that feels good," said ''' + f.n + ".", f'''{f.n} giggled. "The water is so cold!"'''),
        "~" + c("When the sun went down, it was cool again.",
          "They played in the shade and the water until the evening."),
        "~" + c("It was a hot day, but it was a fun day.", "Pip said the sea is the best place on a hot day."),
    ]


@plot(land_not_tiny)
def counting(f):
    things = c("boats", "shells", "birds", "waves")
    return [
        c(f'''One day, {f.a} came to the lighthouse.''', f'''One morning, Pip sat by his window with {f.a}.'''),
        f'''"Pip, can you help me learn to count?" asked {f.n}.''',
        '''"Yes!" said Pip. "Let's count together."''',
        f'''They looked out at the sea. "Let's count the {things}," said Pip.''',
        '''"One, two, three," Pip began.''',
        f'''"Four, five, six!" said {f.n}.''',
        c("They counted all the way to ten.", "They counted and counted until they got to ten."),
        c(f'''"I did it!" said {f.n}. "I can count to ten!"''',
          f'''{f.n} clapped. "Counting is fun!"'''),
        "~" + c('''Pip smiled. "Tomorrow, we can count to twenty," he said.''',
          '''"You are a good counter," said Pip, and he gave his friend a hug.'''),
        "~" + c(f'''That night, {f.n} counted the stars, and Pip counted the times the big light went round.''',
          "Pip was proud of his friend. He tipped his blue hat and smiled."),
    ]


@plot(lambda f: f.has("swim") or f.has("fly"))
def fog_bell(f):
    return [
        c("One morning, a thick gray fog came over the sea.", "One evening, the sea was full of fog."),
        "~" + c("Pip could not see the water or the rocks. Everything was gray.", "It was so thick that you could not see very far."),
        f'''Out on the water, his friend, {f.a}, was lost.''',
        c(f'''{f.n} could not see the beach. "Where is the way home?" {f.he} cried.''',
          f'''{f.n} went this way and that way, but {f.he} could not find the shore.'''),
        "~" + "The big light was on, but the fog was too thick.",
        '''Then Pip had an idea. "I will ring the bell!" he said.''',
        "He ran to the old bell by the lighthouse door and pulled the rope.",
        "~" + "Ding, dong! Ding, dong! The sound went far across the water.",
        f'''{f.n} heard the bell. {f.He} followed the sound, closer and closer.''',
        f'''At last, {f.n} came out of the fog, right next to the lighthouse!''',
        c(f'''"Thank you, Pip!" said {f.n}. "Your bell brought me home."''',
          "Pip was so happy that he threw his blue hat up in the air."),
    ]


@plot(land)
def bubbles(f):
    return [
        c(f'''One sunny afternoon, Pip and {f.a} played outside the lighthouse.''',
          f'''One day, {f.a} brought a little bottle of bubbles to the lighthouse.'''),
        c('''"Let's blow bubbles!" said Pip.''', f'''"Let's blow bubbles!" said {f.n}.'''),
        c("Pip blew, and lots of round bubbles came out.", "They took turns blowing, and the bubbles came out one by one."),
        "~" + c("Some were big, and some were small. They shone like rainbows in the sun.",
          "The bubbles floated up in the wind, over the sand and out to the sea."),
        "~" + f'''{f.n} tried to catch one. Pop! It was gone.''',
        "Then a big bubble floated down and sat right on top of Pip's blue hat.",
        f'''"Look, Pip! You have a bubble on your hat!" laughed {f.n}.''',
        "Pip looked up, and the bubble went pop! Tiny drops fell on his nose.",
        "~" + "They both laughed and laughed.",
        c("They blew bubbles until the bottle was empty.", "It was a silly, happy day."),
    ]


@plot(lambda f: f.has("tiny") or f.n in ("Bella", "Hop"))
def hat_bed(f):
    return [
        c(f'''One cold night, Pip heard a tiny knock on his window.''', "One chilly evening, Pip heard a tiny tap on his window."),
        f'''It was {f.a}. {f.He} was shaking.''',
        f'''"I am so cold," said {f.n}. "I do not have a warm place to sleep."''',
        c('''Pip opened the window. "Come in," he said.''', '''Pip let his little friend in. "You can stay with me," he said.'''),
        "~" + f'''But Pip's bed was too big for {f.n}. Where could {f.he} sleep?''',
        "Then Pip had an idea. He took off his blue hat.",
        f'''"You can sleep in my hat," he said. "It is soft and warm."''',
        f'''{f.n} climbed into the blue hat. It was just the right size.''',
        "~" + c('''"This is the best bed ever," said ''' + f.n + ".", f'''{f.n} smiled and closed {f.his} eyes.'''),
        "Pip put the hat by the warm light, and they both slept well.",
        "~" + c(f'''In the morning, {f.n} said thank you. Pip put his hat back on. It was still warm.''',
          "Pip learned that even a small thing can be a big help to a friend."),
    ]


@plot(lambda f: land_not_tiny(f) and f.kind != "crab")
def brave_pip(f):
    fear = R.randrange(2)
    if fear == 0:
        s = [
            "One night, there was a big storm. Boom! Boom! went the thunder.",
            "Pip was scared. He hid under his bed and pulled his blue hat over his eyes.",
            f'''His friend, {f.a}, was staying with him. {f.He} sat down next to Pip.''',
            f'''"It is just noise," said {f.n}. "The thunder can not hurt you. We are safe in the lighthouse."''',
            "~" + f'''"But it is so loud," said Pip.''',
            f'''"Let's sing a song," said {f.n}. "Then we will not hear it so much."''',
            "So they sang a song together, and they did not hear the thunder so much.",
            "~" + "Soon the storm went away.",
            c('''"Thank you," said Pip. "You helped me be brave."''', '''"I was brave!" said Pip with a smile.'''),
        ]
    else:
        s = [
            "One day, Pip wanted to go to the big rocks at the end of the beach.",
            "But there was a big crab there. It had big claws and it went snap, snap.",
            "Pip was scared. He held his blue hat and did not move.",
            f'''His friend, {f.a}, was with him. "Let's say hello," {f.he} said. "Maybe the crab is nice."''',
            c("Pip took a big breath. He walked up to the crab.", "Pip was still scared, but he took one small step and then another."),
            '''"Hello, crab," he said in a small voice.''',
            '''"Hello!" said the crab. "I am happy to see you. Nobody comes to say hi to me."''',
            "~" + "The crab was not mean at all. It was just lonely.",
            "~" + c("Pip and his friend played with the crab all day.",
              "From then on, the crab was their friend too."),
            '''Pip learned that being brave can help you find new friends.''',
        ]
    s.insert(0, "~" + c("", "Pip was a brave little mouse, but some things still scared him."))
    return s


@plot(land_not_tiny)
def dance(f):
    return [
        c(f'''One evening, Pip and {f.a} sat on the beach.''', f'''One warm night, {f.a} came to the lighthouse.'''),
        "~" + c("The moon was big, and the sea was quiet.", "The stars were out, and the waves were soft."),
        c(f'''"Let's dance!" said {f.n}.''', '''"Let's have a dance party!" said Pip.'''),
        "~" + c("Pip hummed a little song, and they began to dance.", "They had no music, so they listened to the waves."),
        c("They spun around and around. They jumped and kicked.", "They danced this way and that way on the cool sand."),
        "Pip spun so fast that his blue hat flew off!",
        c(f'''{f.n} caught it and put it on {f.his} own head. "You look silly!" said Pip, and they both laughed.''',
          '''It landed on the sand. "Oops!" said Pip, and he put his hat back on. They both fell down laughing.'''),
        "~" + c("They danced until they were very tired.", "They danced until the moon was high in the sky."),
        c("Then they walked back to the lighthouse, humming all the way.",
          "It was the best dance party by the sea."),
    ]


@plot(anyone)
def clean_beach(f):
    trash = c("cups and bags", "old cans and paper", "plastic bags and bottles")
    s = [
        c("One morning, Pip walked down to the beach.", "One day, Pip looked down from his lighthouse at the sand."),
        f'''He saw lots of trash on the sand. There were {trash} everywhere.''',
        c('''"Oh no," said Pip. "This is not good for the sea."''', '''"The beach is so dirty," said Pip sadly.'''),
    ]
    if f.has("water"):
        s += [f'''{f.A} swam up to the shore. "The trash is in the water too," {f.he} said. "It makes my home dirty."''',
              '''"We will clean it up!" said Pip.''',
              f'''Pip picked up the trash on the sand, and {f.n} pushed the trash in the water to the shore.''']
    else:
        s += [f'''{f.A} came to help. "Let's clean it up!" {f.he} said.''',
              c("They got a big bag and picked up the trash, one piece at a time.",
                "They worked all morning until every piece was gone.")]
    s += [
        c("Soon the beach was clean and pretty again.", "At last, the sand was clean."),
        "~" + c("The fish swam happily, and the birds sang.", "The crabs came out to play on the clean sand."),
        "~" + c('''"Thank you!" said a little fish from the water.''', ""),
        c('''"The sea is home for lots of animals," said Pip. "We have to keep it clean."''',
          "Pip tipped his blue hat. He was proud of the work they did."),
    ]
    return s


@plot(lambda f: land(f) and (f.has("fly") or f.has("tiny") or f.kind in ("crab", "cat", "squirrel", "frog")))
def noise(f):
    sound = c("tap, tap, tap", "knock, knock", "scratch, scratch")
    return [
        "One night, Pip was in bed in his lighthouse.",
        f'''Then he heard a noise. {sound.capitalize()}!''',
        "~" + c('''Pip sat up. "Who is there?" he said. Nobody answered.''', "Pip was a little scared. What could it be?"),
        c(f'''{sound.capitalize()}! There it was again.''', f'''The noise came again. {sound.capitalize()}!'''),
        "Pip put on his blue hat and took a little lamp.",
        c("Slowly, he walked down the stairs to look.", "He walked to the window, step by step."),
        f'''It was {f.a}! {f.He} was outside, trying to get in.''',
        f'''"Pip, it is me! I got lost in the dark," said {f.n}.''',
        c(f'''Pip opened the door. "Come in, {f.n}! You scared me!" he said with a laugh.''',
          '''Pip laughed. "I thought you were a monster!" he said.'''),
        "~" + f'''Pip made a warm place for {f.n} to sleep.''',
        c("They both went back to sleep, safe and happy.", "In the morning, they had breakfast together."),
    ]


@plot(land_not_tiny)
def soup(f):
    veg = c("carrots", "peas", "potatoes", "corn")
    return [
        c(f'''One day, Pip went to see his friend, {f.a}.''', f'''One cold morning, Pip heard that {f.a} was sick.'''),
        c(f'''{f.n} was in bed. {f.He} had a cold, and {f.his} nose was red.''',
          f'''{f.n} was in bed. "Achoo!" {f.he} said.'''),
        '''"I will make you some soup," said Pip.''',
        f'''He went back to his lighthouse and cut up some {veg}.''',
        "~" + c("He put them in a little pot with water and let it cook.", "He stirred the pot slowly. It smelled very good."),
        f'''Then he carried the warm soup to {f.n}.''',
        c(f'''{f.n} ate all the soup. "Yum! Thank you, Pip," {f.he} said.''',
          f'''"Mmm," said {f.n}. "This is the best soup."'''),
        "~" + f'''Pip sat with {f.n} and told {f.him} a story about the sea and the big light.''',
        c(f'''Soon {f.n} fell asleep. The next day, {f.he} felt much better.''',
          f'''In a few days, {f.n} was well again.'''),
        c(f'''"When you are sick, I will make you soup," said {f.n}. Pip smiled under his blue hat.''',
          "Pip was happy that he could help his friend feel better."),
    ]


@plot(land)
def hermit_crab(f):
    return [
        c(f'''One day, Pip and {f.a} were playing near the rocks.''', f'''One morning, Pip went for a walk with {f.a}.'''),
        "They saw a small crab. It was sad.",
        '''"What is wrong?" asked Pip.''',
        '''"My shell is too small," said the crab. "I need a new home, but I can't find one."''',
        c(f'''"We will help you!" said Pip and {f.n}.''', '''"Don't worry," said Pip. "We will find you a new shell."'''),
        "~" + "They looked all over the beach.",
        "~" + c(f'''{f.n} found a shell, but it was too big.''', "The first shell they found had a hole in it."),
        "Then Pip found a round white shell. It was just right!",
        "The crab tried it on. It fit!",
        c('''"I love my new home," said the crab. "Thank you!"''',
          '''"It is perfect!" said the crab, and it did a little dance.'''),
        c("Pip smiled. Now he had a home, and the crab had a home too.",
          '''"Everyone needs a good home," said Pip, looking at his tall lighthouse.'''),
        "~" + c("Pip fixed his blue hat, and they walked home happy.", ""),
    ]


@plot(land)
def feather(f):
    col = c("long white", "soft gray", "pretty brown", "bright yellow")
    giver = f"{f.n} flew down and gave Pip a {col} feather." if f.has("fly") else \
        f'''{f.n} found a {col} feather on the sand and gave it to Pip.'''
    return [
        c(f'''One morning, Pip was walking on the beach with {f.a}.''', f'''One day, {f.a} came to visit Pip.'''),
        giver,
        '''"This is for you," said ''' + f.n + ".",
        c('''"Thank you!" said Pip. "What can I do with it?"''', '''Pip looked at the feather. It was very pretty.'''),
        f'''"You can put it on your blue hat!" said {f.n}.''',
        "So Pip put the feather in his hat. It stood up tall.",
        "~" + c("He looked at himself in a pool of water. He looked very fine!",
          '''"How do I look?" asked Pip. "Very nice!" said his friend.'''),
        "~" + c("All the animals on the beach said, \"What a pretty hat!\"",
          "When he walked along the sand, everyone smiled at his hat."),
        c("Pip felt proud and happy.", "Pip wore his hat with the feather every day after that."),
        c('''"Thank you for the best gift," he said to ''' + f.n + ".", ""),
    ]


@plot(land_not_tiny)
def puddles(f):
    return [
        c("One morning, it had rained all night.", "After a big rain, the sun came out again."),
        "There were puddles all over the beach path.",
        f'''Pip and {f.a} put on their boots.''' if not f.has("fly") else
        f'''Pip put on his boots, and {f.a} came along too.''',
        '''"Let's jump!" said Pip.''',
        "Splash! Pip jumped into a big puddle.",
        "~" + f'''Splash! {f.n} jumped in too.''',
        c("Water went everywhere. There was mud on their legs and mud on Pip's blue hat!",
          "They jumped in every puddle they could find. Soon they were very muddy."),
        '''"We are so dirty!" said ''' + f.n + ". They both laughed.",
        "~" + c("They went down to the sea and washed off in the little waves.",
          "They went back to the lighthouse and washed in a warm tub."),
        c("Pip cleaned his hat and put it in the sun to dry.", "Pip hung his wet blue hat by the window to dry."),
        "~" + c("It was a wet and muddy day, but it was the most fun.", "Puddle days were the best days."),
    ]


@plot(lambda f: f.has("kid") or f.kind in ("puppy", "bunny", "cat", "bear"))
def small_help(f):
    thing = c("a shiny ring", "a little key", "a marble", "a gold coin")
    hand = "hand" if f.has("kid") else "paw"
    return [
        f'''Pip had a friend, {f.a}. {f.He} was much bigger than Pip.''',
        "~" + c(f'''Sometimes Pip wished he was big like {f.n}.''', f'''"I wish I was big," Pip said one day. "Being small is no fun."'''),
        c(f'''One day, {f.n} came to visit the lighthouse.''', f'''One afternoon, {f.n} was helping Pip in the lighthouse.'''),
        f'''{f.He} had {thing} in {f.his} {hand}. Then {f.he} dropped it!''',
        f'''It rolled into a tiny crack in the floor.''',
        f'''{f.n} tried to get it, but {f.his} {hand} was too big.''',
        "~" + f'''"Oh no," said {f.n}. "It is lost!"''',
        c('''"I can get it," said Pip. "I am small!"''', '''Pip smiled. "Let me try," he said.'''),
        "He took off his blue hat, went into the crack, and came back out with it.",
        f'''"Thank you, Pip!" said {f.n}. "I am glad you are small."''',
        c("Pip smiled. Being small was good after all.", "Pip put his hat back on. Now he liked being small."),
    ]


@plot(kid)
def boat_watch(f):
    return [
        c("Every morning, Pip sat at the top of his lighthouse and waved at the boats.",
          "Pip liked to watch the boats go by from the window of his lighthouse."),
        "~" + c("He waved his blue hat, but the boats never waved back.", "Nobody ever saw the little mouse way up high."),
        f'''One day, a small boat came by. In it was {f.a}.''',
        f'''{f.n} looked up at the lighthouse. {f.He} saw something blue.''',
        f'''"Look! A little mouse in a blue hat!" {f.he} said. Then {f.he} waved.''',
        "~" + "Pip was so happy! He waved and waved.",
        f'''The next day, {f.n} came to the lighthouse. {f.He} knocked on the door.''',
        f'''"Hello! I am {f.n}. I saw you waving," {f.he} said.''',
        '''"I am Pip," said Pip. "Do you want to see the big light?"''',
        "~" + c("They went all the way up the stairs together.", f'''Pip showed {f.n} every part of the lighthouse.'''),
        c("From then on, every time the boat went by, they waved to each other.",
          "They became the best of friends."),
    ]


@plot(land_not_tiny)
def tour(f):
    bed = c("a little box with a soft sock", "an old teacup with a bit of cotton", "a matchbox with a tiny pillow")
    return [
        c(f'''One day, {f.a} came to the lighthouse.''', f'''Pip had a new friend, {f.a}.'''),
        f'''"I have never been inside a lighthouse," said {f.n}.''',
        c('''"Come in! I will show you," said Pip.''', '''Pip opened the door. "Welcome to my home!" he said.'''),
        "~" + c("First, they went up the round stairs. They went up and up and up.", "First, Pip showed the long stairs that went round and round."),
        f'''Then Pip showed his bed. It was {bed}.''',
        "~" + f'''"It is so cute!" said {f.n}.''',
        "~" + "Next, Pip showed the hook where he put his blue hat at night.",
        "At last, they came to the very top. There was the big light.",
        '''"Every night, this light helps the boats find their way," said Pip.''',
        f'''{f.n} looked out at the sea. "Wow! You can see everything from here!"''',
        c("Pip was proud of his home. It was the best home for a little mouse.",
          f'''"Thank you, Pip," said {f.n}. "You have the best home."'''),
    ]


@plot(land_not_tiny)
def baking(f):
    return [
        c(f'''One day, Pip and {f.a} wanted to bake cookies.''', f'''One rainy day, Pip and {f.a} decided to bake cookies.'''),
        "They mixed flour, sugar and milk in a big bowl.",
        "~" + c("They made the dough into little round shapes.", "They made some cookies round and some like stars."),
        "Then they put the cookies in the oven.",
        "~" + c('''"Let's play while they bake," said Pip.''', f'''"Let's go look at the sea," said {f.n}.'''),
        "They played and played. They forgot all about the cookies!",
        c('''Then they smelled something. "Oh no! The cookies!" said Pip.''',
          f'''Then {f.n} sniffed. "Something is burning!"'''),
        "The cookies were black and hard.",
        f'''{f.n} was sad. But Pip said, "That is okay. We can try again."''',
        "~" + "This time, they sat by the oven and waited.",
        c("The new cookies were soft and yummy.", "The cookies came out warm and golden."),
        c('''"Next time, we will watch them," said Pip, and they both laughed.''',
          "They ate them on the steps of the lighthouse, and Pip got crumbs on his blue hat."),
    ]


@plot(land_not_tiny)
def lost_way(f):
    return [
        c(f'''One afternoon, {f.a} went for a long walk on the beach.''', f'''One day, {f.a} went far down the beach to look for shells.'''),
        "~" + c(f'''{f.He} walked and walked, far away from home.''', f'''{f.He} found many pretty shells and did not look where {f.he} was going.'''),
        "Soon the sun went down. It was getting dark.",
        f'''"Oh no," said {f.n}. "Where am I? Which way is home?"''',
        f'''Back at the lighthouse, Pip was worried. "Where is {f.n}?" he said.''',
        c('''"I know what to do," said Pip. He ran up to the top and turned on the big light early.''',
          "Pip put on his blue hat and ran up the stairs. He made the big light shine bright."),
        "~" + "The light went round and round over the beach.",
        f'''Far away, {f.n} saw the light. "That is Pip's lighthouse!" {f.he} said.''',
        f'''{f.n} walked toward the light, step by step, until {f.he} was home.''',
        c(f'''"Thank you, Pip," said {f.n}. "Your light helped me find my way."''',
          f'''Pip gave {f.n} a big hug. "I am so glad you are back!"'''),
        "~" + c("From then on, they always walked on the beach together.", ""),
    ]


@plot(land_not_tiny)
def bedtime(f):
    return [
        c(f'''One night, {f.a} stayed at the lighthouse with Pip.''', f'''It was time for bed at the lighthouse. {f.A} was staying over.'''),
        "~" + "First, they had warm milk and a little cookie.",
        "~" + "Then they brushed their teeth.",
        c("Pip took off his blue hat and put it on its little hook.", "Pip hung his blue hat by the bed, like every night."),
        '''"Why do you take off your hat?" asked ''' + f.n + ".",
        '''"So it can sleep too," said Pip with a smile.''',
        c("Then Pip went to the window. \"Good night, sea. Good night, boats,\" he said.",
          "Then Pip looked out at the sea and said good night to the waves."),
        "~" + "The big light went round and round, and the waves sang a soft song.",
        f'''"Good night, Pip," said {f.n}. "Good night, {f.n}," said Pip.''',
        c("Soon they were both fast asleep.", "They closed their eyes and dreamed happy dreams."),
    ]


@plot(land_not_tiny)
def wish_fly(f):
    return [
        c("Pip liked to watch the birds fly over the sea.", "Every day, Pip saw the seagulls fly high over his lighthouse."),
        '''"I wish I could fly," he said.''',
        f'''One day, he told his friend, {f.a}.''',
        f'''{f.n} thought for a moment. "You can not fly, Pip," {f.he} said. "But I know a place where you can feel like a bird."''',
        "They went up to the very top of the lighthouse.",
        "The wind blew in Pip's face. He could see the sea, the clouds and the birds all around.",
        c('''"I feel like I am flying!" said Pip. He held his blue hat so it would not blow away.''',
          '''Pip opened his arms wide. "Wheee! I am flying!" he said.'''),
        "~" + c("A seagull flew by and said hello.", "The birds flew so close that Pip could almost touch them."),
        "~" + '''"Thank you," said Pip. "This is the best day."''',
        c("Pip learned that his lighthouse was a very special place.", "After that, Pip went to the top every day to feel like a bird."),
    ]


@plot(land_not_tiny)
def fishing(f):
    return [
        c(f'''One morning, Pip and {f.a} went fishing off the rocks.''', f'''One day, {f.a} asked Pip to go fishing.'''),
        "They had a little stick with a string on it.",
        c("They sat and waited and waited. Nothing happened.", "They waited a long time, but no fish came."),
        f'''"This is boring," said {f.n}.''',
        '''"Let's be patient," said Pip. "Good things take time."''',
        "Then the string moved! Pip pulled and pulled.",
        c("Up came... an old boot!", "Up came a big, wet, green piece of seaweed!"),
        f'''Pip and {f.n} laughed so hard that they almost fell off the rock.''',
        c('''"That is not a fish!" said ''' + f.n + ".", '''"That is a funny fish!" said Pip.'''),
        "They put it back and looked at the little fish swimming in the water instead.",
        c('''"I do not want to catch the fish," said Pip. "I like to see them swim."''',
          "Pip thought the fish looked happy in the sea. So they went home and had cheese for lunch."),
    ]


@plot(land_not_tiny)
def sleepy_sun(f):
    return [
        c(f'''One evening, Pip and {f.a} sat on a rock by the sea.''', f'''Every evening, Pip watched the sun go down. One day, {f.a} came to watch too.'''),
        "~" + c("The sun was low and orange.", "The sky turned pink and orange and gold."),
        f'''"Where does the sun go at night?" asked {f.n}.''',
        '''"It goes to sleep behind the sea," said Pip.''',
        f'''"Does it wear a hat like you when it sleeps?" asked {f.n}.''',
        '''Pip laughed. "Maybe a big yellow one!" he said.''',
        "~" + c("They watched the sun slowly go down into the water.", "Slowly, the sun went down, down, down."),
        c("Then it was dark, and Pip went up to turn on the big light.",
          "When it was gone, the big light of the lighthouse came on."),
        c('''"Good night, sun," said Pip and ''' + f.n + ".", '''"See you in the morning, sun!" said Pip.'''),
        "~" + c("Pip was happy. He loved the end of the day by the sea.", "Then the two friends went inside to get warm."),
    ]


@plot(land_not_tiny)
def mess(f):
    return [
        c(f'''One day, Pip and {f.a} played with toys in the lighthouse.''', f'''One afternoon, {f.a} came to play at the lighthouse.'''),
        "~" + c("They played with blocks, balls and little cars.", "They played with all of Pip's toys."),
        c("Soon there were toys everywhere, on the floor and on the stairs.", "Soon the room was a big mess."),
        f'''"Let's go play outside now," said {f.n}.''',
        '''"Wait," said Pip. "We have to clean up first."''',
        f'''"Why?" asked {f.n}.''',
        '''"Someone could fall on the stairs," said Pip. "And I want my home to be nice."''',
        c("So they put the blocks in a box and the cars on a shelf.", "They put every toy back where it goes."),
        "~" + c("They made it a game to see who could clean up faster.", "They sang a cleaning song to make it fun."),
        "~" + c("When they were done, the lighthouse was neat and tidy.", "Soon the room was clean again."),
        "Then Pip put on his blue hat, and they ran outside to play by the sea.",
    ]


@plot(land_not_tiny)
def pip_sad(f):
    return [
        "One day, Pip was very sad.",
        c("He could not find his blue hat anywhere.", "His blue hat was gone!"),
        "~" + c("He looked under his bed. He looked on the stairs. It was not there.", "He looked all over the lighthouse, from the top to the bottom."),
        f'''His friend, {f.a}, came by. "Why are you sad, Pip?" {f.he} asked.''',
        '''"I lost my blue hat," said Pip. "It is my favorite thing."''',
        f'''"I will help you look," said {f.n}.''',
        "~" + c("They looked in the kitchen and by the door.", "They looked in every room of the lighthouse."),
        c(f'''Then {f.n} laughed. "Pip! Look in the window!"''', f'''Then {f.n} said, "What is that next to the big light?"'''),
        c("Pip looked. There was his hat, right where he left it to dry!", "There was the blue hat, sitting next to a cup of tea."),
        c('''"I forgot!" said Pip, and he laughed too.''', '''"Silly me!" said Pip.'''),
        '''He put the hat on his head and hugged his friend. "Thank you!"''',
    ]


@plot(lambda f: f.has("fly"))
def flying_view(f):
    return [
        f'''Pip had a friend who could fly. It was {f.a}.''',
        "~" + f'''Every morning, {f.n} flew up to the top of the lighthouse to say hello.''',
        f'''One day, {f.n} came with news. "Pip! There is a big ship coming!"''',
        c("Pip ran up to the window. Far away, there was a huge ship with white sails.", "Pip looked out. A big ship was coming close to the rocks."),
        '''"It is coming too close to the rocks," said Pip. "I must help!"''',
        "He made the big light shine bright and turn fast.",
        f'''{f.n} flew out over the water and called, "Go that way! Go that way!"''',
        "The ship saw the light and turned away from the rocks just in time.",
        "~" + c("The people on the ship waved. Pip waved his blue hat back.", "The ship blew its horn to say thank you. Toot, toot!"),
        c(f'''"We make a good team," said {f.n}.''', '''"Thank you, friend," said Pip. "We helped the ship together."'''),
    ]


@plot(land_not_tiny)
def pip_mistake(f):
    thing = c("cup", "little vase", "plate")
    return [
        c(f'''One rainy day, Pip and {f.a} played ball inside the lighthouse.''', f'''One morning, Pip was playing ball with {f.a} inside the lighthouse.'''),
        f'''On the table was a pretty {thing} that {f.n} had brought to show Pip.''',
        "Pip threw the ball too hard. It hit the " + thing + ", and it fell. Crash!",
        f'''The {thing} broke into pieces.''',
        "~" + f'''{f.n} was very sad.''',
        c("Pip felt bad. He wanted to hide.", "Pip pulled his blue hat down over his eyes. He did not want to say anything."),
        f'''But then he said, "I am sorry, {f.n}. It was my fault."''',
        f'''{f.n} looked at him. "Thank you for saying sorry," {f.he} said.''',
        "Pip and his friend glued the pieces back together.",
        "~" + c(f'''It did not look new, but {f.n} liked it even more now.''', "It had some lines on it now, but it was still pretty."),
        c("Pip learned that it is always good to tell the truth and say sorry.", "After that, they only played ball outside."),
    ]


# ---------------------------------------------------------------------------------------------
# Endings that can follow any plot (added now and then).
# ---------------------------------------------------------------------------------------------

def closer(f):
    return c(
        "That night, the big light shone bright over the sea.",
        "That night, Pip slept well in his cozy lighthouse by the sea.",
        f"Pip and {f.n} were the best of friends.",
        "Then Pip went home to his lighthouse, happy and tired.",
    )


# ---------------------------------------------------------------------------------------------

WORD_RE = re.compile(r"[A-Za-z']+")


def words(text):
    return WORD_RE.findall(text)


def tidy(sentences):
    text = " ".join(s for s in sentences if s)
    text = re.sub(r"\s+", " ", text).strip()
    return text


def make_story(name, fn, f):
    """Opening + plot (+ now and then a closing line). Sentences marked "~" may be left out:
    they are dropped at random until the story is no longer than a random target length."""
    f.new_story()
    parts = opening() + fn(f)
    if R.random() < 0.15:
        extra = closer(f)
        if extra not in parts:
            parts.append("~" + extra)
    target = R.randint(75, 135)
    optional = [i for i, p in enumerate(parts) if p.startswith("~")]
    R.shuffle(optional)
    drop = set()
    for i in optional:
        if len(words(tidy(p for j, p in enumerate(parts) if j not in drop))) <= target:
            break
        drop.add(i)
    return tidy(p.lstrip("~") for j, p in enumerate(parts) if j not in drop)


def check_story(s):
    assert "Pip" in s and "lighthouse" in s and "blue hat" in s, s
    assert "\n" not in s
    assert MIN_WORDS <= len(words(s)) <= MAX_WORDS, (len(words(s)), s)
    assert s.count('"') % 2 == 0, s


def trigrams(s):
    w = [x.lower() for x in words(s)]
    return set(zip(w, w[1:], w[2:]))


def too_close(tri, others):
    """True if the story shares most of its word triples with a story already kept."""
    return any(len(tri & o) / len(tri | o) > MAX_OVERLAP for o in others)


def generate(total):
    stories = []
    kept_tri = []
    seen = set()
    plot_uses = {name: 0 for name, _, _ in PLOTS}
    plot_fails = {name: 0 for name, _, _ in PLOTS}
    pair_uses = set()
    friend_uses = {f.n: 0 for f in FRIENDS}
    tries = 0
    while len(stories) < total:
        tries += 1
        assert tries < 200000
        live = [n for n, _, _ in PLOTS if plot_fails[n] < 300]
        low = min(plot_uses[n] for n in live)
        names = [n for n in live if plot_uses[n] == low]
        name = R.choice(names)
        fn, ok = next((fn, ok) for n, fn, ok in PLOTS if n == name)
        cands = [f for f in FRIENDS if ok(f) and (name, f.n) not in pair_uses]
        if not cands:
            cands = [f for f in FRIENDS if ok(f)]
        fl = min(friend_uses[f.n] for f in cands)
        f = R.choice([f for f in cands if friend_uses[f.n] <= fl + 1])
        s = make_story(name, fn, f)
        n = len(words(s))
        if s in seen or not (MIN_WORDS <= n <= MAX_WORDS):
            continue
        tri = trigrams(s)
        if too_close(tri, kept_tri):
            plot_fails[name] += 1
            continue
        check_story(s)
        seen.add(s)
        stories.append(s)
        kept_tri.append(tri)
        plot_uses[name] += 1
        pair_uses.add((name, f.n))
        friend_uses[f.n] += 1
    return stories


def main():
    stories = generate(N_TRAIN + N_VAL)
    # every sixth story (up to N_VAL of them) goes to validation so both files cover all plots
    val_idx = set(range(5, 6 * N_VAL, 6))
    train = [s for i, s in enumerate(stories) if i not in val_idx]
    val = [s for i, s in enumerate(stories) if i in val_idx]
    assert len(train) == N_TRAIN and len(val) == N_VAL
    here = os.path.dirname(os.path.abspath(__file__))
    for fname, items in (("pip_the_lighthouse_mouse.txt", train), ("pip_the_lighthouse_mouse.val.txt", val)):
        with open(os.path.join(here, fname), "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n\n".join(items) + "\n")
    print(f"wrote {len(train)} training and {len(val)} validation stories", file=sys.stderr)


if __name__ == "__main__":
    main()
