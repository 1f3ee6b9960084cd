"""The local SQS emulator: moto's server, with one fix so its FIFO queues keep a message group's
order when messages come back after their visibility timeout, as SQS does.

moto counts a message group as "in flight" while any of its messages is in its pending set, even a
message whose visibility timeout has passed. When two messages of a group time out together (a
consumer failed the first and held the second behind it), the first is then skipped because the
second still looks in flight, and the second is delivered first: the order SQS promises is broken.
Here a group is in flight only while one of its messages is invisible. (moto 5.2.5; remove this
file when moto fixes `Queue.pending_message_groups`.)
"""

import sys

from moto.server import main
from moto.sqs.models import Queue


def pending_message_groups(self):
    return {m.group_id for m in self._pending_messages if m.group_id is not None and not m.visible}


Queue.pending_message_groups = property(pending_message_groups)

if __name__ == "__main__":
    main(sys.argv[1:])
