"""The template check catches what it is for: each case breaks the real template in one way."""

import copy
import os
import unittest

import yaml
from samtranslator.yaml_helper import yaml_parse

from check_template import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with open(os.path.join(ROOT, "infra/template.yaml")) as f:
    TEMPLATE = yaml_parse(f.read())
with open(os.path.join(ROOT, "infra/sdk-calls.yaml")) as f:
    TABLE = yaml.safe_load(f)


def statements(t, role):
    return t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


class CheckTemplate(unittest.TestCase):
    def errors(self, t):
        return "\n".join(check(t, TABLE))

    def test_the_template_passes(self):
        self.assertEqual(check(TEMPLATE, TABLE), [])

    def test_a_role_made_by_sam_brings_the_sqs_managed_policy(self):
        t = copy.deepcopy(TEMPLATE)
        fn = t["Resources"]["TaggerFunction"]["Properties"]
        del fn["Role"]
        fn["Policies"] = [{"Statement": statements(t, "TaggerRole")}]
        self.assertIn("AWSLambdaSQSQueueExecutionRole", self.errors(t))

    def test_an_action_the_code_does_not_call_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        statements(t, "KeywordReplyRole").append(
            {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": {"Fn::GetAtt": ["UsersTable", "Arn"]}}
        )
        self.assertIn("KeywordReplyFunction: allows dynamodb:DeleteItem on UsersTable", self.errors(t))

    def test_a_consumer_writing_outside_its_own_keys_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        for st in statements(t, "KeywordReplyRole"):
            st.pop("Condition", None)
        self.assertIn("allows dynamodb:DeleteItem on EventsTable, which", self.errors(t))

    def test_anything_on_star_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        statements(t, "WebhookRole").append({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"})
        self.assertIn('WebhookFunction: allows sqs:SendMessage on "*"', self.errors(t))

    def test_a_secret_in_the_configuration_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        env = t["Resources"]["WebhookFunction"]["Properties"]["Environment"]["Variables"]
        env["LINE_CHANNEL_SECRET"] = "{{resolve:secretsmanager:oa/line:SecretString:channelSecret}}"
        self.assertIn("LINE_CHANNEL_SECRET resolves a secret", self.errors(t))

    def test_unbounded_consumers_and_reserved_concurrency_are_refused(self):
        t = copy.deepcopy(TEMPLATE)
        fn = t["Resources"]["TaggerFunction"]["Properties"]
        del fn["Events"]["TagQueue"]["Properties"]["ScalingConfig"]
        fn["ReservedConcurrentExecutions"] = 5
        errors = self.errors(t)
        self.assertIn("no ScalingConfig.MaximumConcurrency", errors)
        self.assertIn("TaggerFunction: a queue consumer with reserved concurrency", errors)

    def test_a_counted_failure_nobody_alarms_on_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        del t["Resources"]["WebhookMalformedEventsAlarm"]
        self.assertIn("WebhookMalformedEvents: counts WebhookMalformedEvents, but no alarm watches it", self.errors(t))

    def test_a_public_url_whose_refused_requests_nobody_alarms_on_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        del t["Resources"]["WebhookRefusedRequestsAlarm"]
        self.assertIn("the public Function URL's Url4xxCount: no alarm watches it", self.errors(t))

    def test_log_retention_and_alarm_actions_are_required(self):
        t = copy.deepcopy(TEMPLATE)
        del t["Resources"]["TaggerLogGroup"]["Properties"]["RetentionInDays"]
        del t["Resources"]["TagDeadLetterAlarm"]["Properties"]["AlarmActions"]
        errors = self.errors(t)
        self.assertIn("TaggerFunction: no log group of its own with a retention", errors)
        self.assertIn("TagDeadLetterAlarm: does not notify", errors)

    def test_tables_are_kept_and_every_table_and_queue_is_an_output(self):
        t = copy.deepcopy(TEMPLATE)
        del t["Resources"]["UsersTable"]["DeletionPolicy"]
        del t["Outputs"]["MulticastQueueUrl"]
        errors = self.errors(t)
        self.assertIn("UsersTable: deleting or replacing the stack would delete its data", errors)
        self.assertIn("MulticastQueue: not in the stack's Outputs", errors)

    def test_an_alarm_without_a_runbook_row_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        t["Resources"]["UnexplainedAlarm"] = copy.deepcopy(t["Resources"]["CampaignsStalledAlarm"])
        self.assertIn("UnexplainedAlarm: no row in docs/operations.md", self.errors(t))

    def test_a_dashboard_price_unlike_the_price_table_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        t["Mappings"]["Prices"]["tokyo"]["WriteUnit"] = "0.000000625"
        self.assertIn("Mappings Prices tokyo WriteUnit", self.errors(t))

    def test_a_dashboard_cost_with_another_memory_size_is_refused(self):
        t = copy.deepcopy(TEMPLATE)
        t["Resources"]["MulticastFunction"]["Properties"]["MemorySize"] = 1024
        self.assertIn("CostDashboard: multicast's cost does not use its MemorySize 1024", self.errors(t))


if __name__ == "__main__":
    unittest.main()
