// Decides IAM requests with @cloud-copilot/iam-simulate, for tests/aws/iam_policies.py.
//
// Usage: node simulate.mjs INSTALL_DIR < input.json > decisions.json
// INSTALL_DIR holds node_modules (npm ci of this directory's package-lock.json).
// Input: {"principal": ARN, "identityPolicy": {...}, "resourcePolicy": {...} (optional),
//         "requests": [{"action", "resource", "accountId", "context": {key: value}}]}
// Output: one {"decision", "ignoredContextKeys"} per request, in order; "decision" is
// Allowed, ImplicitlyDenied, ExplicitlyDenied, or Error (with "errors").
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(join(process.argv[2], 'package.json'))
const { runSimulation } = require('@cloud-copilot/iam-simulate')

const input = JSON.parse(readFileSync(0, 'utf8'))
const decisions = []
for (const request of input.requests) {
  const answer = await runSimulation(
    {
      request: {
        principal: input.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: request.accountId },
        contextVariables: request.context,
      },
      identityPolicies: [{ name: 'identity', policy: input.identityPolicy }],
      resourcePolicy: input.resourcePolicy,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    { simulationMode: 'Strict' },
  )
  if (answer.resultType === 'single') {
    decisions.push({
      decision: answer.overallResult,
      ignoredContextKeys: answer.result.ignoredContextKeys ?? [],
    })
  } else if (answer.resultType === 'wildcard' && request.resource === '*') {
    // An action whose resource types are all optional (cloudwatch:PutMetricData),
    // asked on "*" as AWS does: iam-simulate decides it once per resource type.
    decisions.push({
      decision: answer.overallResult,
      ignoredContextKeys: [...new Set(answer.results.flatMap((r) => r.ignoredContextKeys ?? []))],
    })
  } else {
    decisions.push({ decision: 'Error', errors: answer.errors ?? answer.resultType })
  }
}
process.stdout.write(JSON.stringify(decisions))
