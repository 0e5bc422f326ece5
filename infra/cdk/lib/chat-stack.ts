/**
 * The chat backend's stack, resource for resource what template.yaml deploys with SAM: the
 * table, the attachment bucket, the dispatch queue and its dead-letter queue with the alarm, the seven Rust Lambdas
 * (arm64, provided.al2023) with their least-privilege policies and log groups, the HTTP API
 * and the WebSocket API with their routes and stage throttling, and the outputs.
 * tests/cdk-check synthesizes it and compares it with template.yaml after the SAM transform,
 * so the two cannot drift apart unnoticed.
 *
 * Higher-level constructs where they render what the template declares (table, queues, alarm,
 * functions, log groups); the plain CloudFormation resources (L1) for both APIs, because the
 * API Gateway v2 integrations of aws-cdk-lib add one Lambda permission per route and cannot
 * throttle a single route nor order a stage after the routes its settings name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Aws,
  CfnCondition,
  CfnOutput,
  CfnParameter,
  CfnResource,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  Validations,
} from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { declareConditions, declareParameters, declareRules, ParameterName } from './parameters';

export interface ChatStackProps extends StackProps {
  /**
   * The folder of the built `bootstrap` binaries: `<lambdaDir>/<FunctionId>/bootstrap` as
   * `infra/sam-build` leaves them in `.aws-sam/build`, or `<lambdaDir>/<binary>/bootstrap` as
   * `cargo lambda build` leaves them in `target/lambda`.
   */
  readonly lambdaDir: string;
  /** New defaults of non-secret parameters (CDK context in bin/app.ts). */
  readonly parameterDefaults?: Partial<Record<ParameterName, string>>;
}

/** What differs between the seven functions. */
interface FunctionSpec {
  /** The construct id, also the folder name `sam build` gives the function's artifacts. */
  readonly id:
    | 'SessionFunction'
    | 'SendFunction'
    | 'WebhookFunction'
    | 'ConnectFunction'
    | 'DisconnectFunction'
    | 'DispatchFunction'
    | 'AgentFunction';
  /** The binary of `functions/src/bin/`. */
  readonly binary: string;
  readonly description: string;
  readonly timeout?: Duration;
  /** Variables of this function alone, beside the shared environment. */
  readonly environment?: Record<string, string>;
  readonly reservedConcurrency: ParameterName;
  /** Exactly the calls the code makes (crates/chat-aws/tests/iam_policy.rs pins the template's). */
  readonly statements: iam.PolicyStatement[];
}

const DESCRIPTION =
  'chat-backend: a chat backend whose replies come from an n8n workflow. Seven Rust Lambdas (arm64, provided.al2023), ' +
  'one DynamoDB table, an S3 bucket of attachments, an SQS queue with a dead-letter queue, an HTTP API and a WebSocket API. ' +
  'Deployed with the CDK app in infra/cdk.';

export class ChatStack extends Stack {
  constructor(scope: Construct, id: string, props: ChatStackProps) {
    super(scope, id, { description: DESCRIPTION, ...props });
    this.templateOptions.templateFormatVersion = '2010-09-09';

    const p = declareParameters(this, props.parameterDefaults);
    const c = declareConditions(this, p);
    declareRules(this, p);
    Validations.of(this).acknowledge({
      id: 'CloudFormation-Validate::W2509',
      reason: 'The *SecretParameter parameters hold the names of SSM parameters, not secrets (those are NoEcho).',
    });
    const ifElse = (condition: CfnCondition, yes: unknown, no: unknown) => Fn.conditionIf(condition.logicalId, yes, no);
    const orNone = (condition: CfnCondition, value: string) => ifElse(condition, value, Aws.NO_VALUE).toString();

    // ----- storage --------------------------------------------------------------------------

    // Chat history outlives the stack: deleting or replacing the stack keeps the table.
    const table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'ttl',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    table.addLocalSecondaryIndex({
      indexName: 'byMessageId',
      sortKey: { name: 'msgId', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    // The agents' inbox: sparse indexes, so only sessions a person was asked for or holds are
    // in them (sessions with the bot cost no index write).
    const inboxIndex = (indexName: string, partitionKey: string, sortKey: string) =>
      table.addGlobalSecondaryIndex({
        indexName,
        partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    inboxIndex('byWaiting', 'waitPk', 'waitSk');
    inboxIndex('byActivity', 'openPk', 'activity');
    inboxIndex('byHolder', 'heldBy', 'activity');
    // A signed-in user's conversations, newest activity first (GET /sessions): sparse, only
    // user sessions carry userId.
    inboxIndex('byUser', 'userId', 'activity');
    // A session's edited or deleted messages by the time of their change
    // (GET …/messages?updatedAfter=): sparse, only a change writes changedAt.
    table.addGlobalSecondaryIndex({
      indexName: 'byChange',
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'changedAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    // The attachments: the files users and agents send, under attachments/<sessionId>/<id>.
    // Browsers upload with presigned PUTs and download with presigned GETs (signed by the
    // functions' roles, so those grant PutObject and GetObject); nothing is public. An upload
    // carries the tag chat-pending=1 (signed into its URL) until a message takes it; objects
    // still tagged a day later go by the lifecycle rule (the record's own hour makes them
    // unusable first). Sent files stay, like the table, beyond the stack.
    const attachmentsBucket = new s3.Bucket(this, 'AttachmentsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      encryption: s3.BucketEncryption.S3_MANAGED,
      lifecycleRules: [
        { id: 'ExpireUnsentAttachments', prefix: 'attachments/', tagFilters: { 'chat-pending': '1' }, expiration: Duration.days(1) },
      ],
      // The browser's upload (PUT with the signed Content-Type and x-amz-tagging) and a
      // script's download (GET), from the origins the HTTP API allows.
      cors: [
        {
          allowedOrigins: ['*'],
          allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.GET],
          allowedHeaders: ['content-type', 'x-amz-tagging'],
          maxAge: 600,
        },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ----- dispatch queue -------------------------------------------------------------------

    // Queues and log groups hold nothing that must outlive the stack: they go with it.
    const deadLetterQueue = new sqs.Queue(this, 'DispatchDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const queue = new sqs.Queue(this, 'DispatchQueue', {
      // At least 6x the dispatch function's timeout (900 s), as Lambda advises for SQS sources.
      // A retry's backoff is set on the record itself; this only delays a record whose
      // function died mid-call (its reply deadline tells the user meanwhile).
      visibilityTimeout: Duration.seconds(5400),
      retentionPeriod: Duration.days(4),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: p.DispatchMaxAttempts.valueAsNumber },
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const alarm = new cloudwatch.Alarm(this, 'DeadLetterAlarm', {
      alarmDescription:
        'A user message could not be delivered to n8n after every attempt and was dead-lettered. ' +
        'Inspect the dead-letter queue (DlqUrl output).',
      metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) }),
      evaluationPeriods: 1,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    // The topic is a parameter that may be empty, which an alarm action object cannot express.
    (alarm.node.defaultChild as cloudwatch.CfnAlarm).addPropertyOverride(
      'AlarmActions',
      ifElse(c.HasAlarmTopic, [p.AlarmTopicArn.valueAsString], Aws.NO_VALUE),
    );
    Validations.of(alarm).acknowledge({
      id: 'CloudFormation-Validate::W1030',
      reason: 'AlarmTopicArn is used only when it is not empty (HasAlarmTopic).',
    });

    // ----- APIs (their ids are needed by every function's environment) ---------------------

    const httpApi = new apigw.CfnApi(this, 'HttpApi', {
      name: `${Aws.STACK_NAME}-http`,
      protocolType: 'HTTP',
      corsConfiguration: {
        allowOrigins: ['*'],
        allowHeaders: ['authorization', 'content-type'],
        allowMethods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
        exposeHeaders: ['retry-after'],
        maxAge: 600,
      },
    });
    const webSocketApi = new apigw.CfnApi(this, 'WebSocketApi', {
      name: `${Aws.STACK_NAME}-ws`,
      protocolType: 'WEBSOCKET',
      routeSelectionExpression: '$request.body.action',
    });
    const stage = p.Stage.valueAsString;
    const httpApiUrl = `https://${httpApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`;
    const webSocketHost = `${webSocketApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}/${stage}`;
    const metricsNamespace = `ChatBackend/${Aws.STACK_NAME}`;

    // ----- functions ------------------------------------------------------------------------

    const environment: Record<string, string> = {
      RUST_LOG: 'info',
      TABLE_NAME: table.tableName,
      QUEUE_URL: queue.queueUrl,
      // Base URL n8n calls back: the webhook is ${CHAT_PUBLIC_URL}/webhook.
      CHAT_PUBLIC_URL: httpApiUrl,
      // The API Gateway Management API endpoint (PostToConnection), from id, region and stage.
      WEBSOCKET_ENDPOINT: `https://${webSocketHost}`,
      // What POST /sessions returns as `websocketUrl`.
      CHAT_WEBSOCKET_URL: `wss://${webSocketHost}`,
      // Each secret: its value, or the name of the SSM parameter that holds it.
      CHAT_WEBHOOK_SECRET: ifElse(c.HasWebhookSecretParameter, Aws.NO_VALUE, p.WebhookSecret.valueAsString).toString(),
      CHAT_WEBHOOK_SECRET_PARAM: orNone(c.HasWebhookSecretParameter, p.WebhookSecretParameter.valueAsString),
      CHAT_SESSION_SECRET: ifElse(c.HasSessionSecretParameter, Aws.NO_VALUE, p.SessionSecret.valueAsString).toString(),
      CHAT_SESSION_SECRET_PARAM: orNone(c.HasSessionSecretParameter, p.SessionSecretParameter.valueAsString),
      CHAT_AUTH_JWT_SECRET: orNone(c.HasAuthJwtSecret, p.AuthJwtSecret.valueAsString),
      CHAT_AUTH_JWT_SECRET_PARAM: orNone(c.HasAuthJwtSecretParameter, p.AuthJwtSecretParameter.valueAsString),
      // Empty means unset for these three.
      CHAT_AUTH_JWKS_URL: p.AuthJwksUrl.valueAsString,
      CHAT_AUTH_JWT_AUDIENCE: p.AuthJwtAudience.valueAsString,
      CHAT_AUTH_JWT_ISSUER: p.AuthJwtIssuer.valueAsString,
      CHAT_N8N_WEBHOOK_URL: p.N8nWebhookUrl.valueAsString,
      CHAT_DISPATCH_MAX_ATTEMPTS: p.DispatchMaxAttempts.valueAsString,
      CHAT_DISPATCH_BACKOFF_MS: p.DispatchBackoffMs.valueAsString,
      CHAT_DISPATCH_TIMEOUT_MS: p.DispatchTimeoutMs.valueAsString,
      CHAT_STREAM_TIMEOUT_MS: p.StreamTimeoutMs.valueAsString,
      CHAT_WELCOME_MESSAGE: p.WelcomeMessage.valueAsString,
      CHAT_N8N_SESSION_START: p.N8nSessionStart.valueAsString,
      CHAT_RETENTION_DAYS_GUEST: p.RetentionDaysGuest.valueAsString,
      CHAT_RETENTION_DAYS_USER: p.RetentionDaysUser.valueAsString,
      CHAT_EDIT_WINDOW_S: p.EditWindowSeconds.valueAsString,
      CHAT_MAX_CONTENT_CHARS: p.MaxContentChars.valueAsString,
      CHAT_MAX_REPLY_CHARS: p.MaxReplyChars.valueAsString,
      CHAT_REPLY_TIMEOUT_MS: p.ReplyTimeoutMs.valueAsString,
      CHAT_HANDOFF_TIMEOUT_MS: p.HandoffTimeoutMs.valueAsString,
      CHAT_RATE_MESSAGES_PER_MINUTE: p.RateMessagesPerMinute.valueAsString,
      CHAT_RATE_SESSIONS_PER_5MIN: p.RateSessionsPer5Min.valueAsString,
      CHAT_RATE_WEBHOOKS_PER_MINUTE: p.RateWebhooksPerMinute.valueAsString,
      // The functions' metrics (EMF lines on stdout): their namespace, and the Stage dimension.
      CHAT_METRICS_NAMESPACE: metricsNamespace,
      CHAT_STAGE: stage,
    };

    // TransactWriteItems needs the action of each item it holds (PutItem, UpdateItem,
    // DeleteItem); DeleteItem is where a push answered 410 Gone removes the connection.
    const tableStatement = (...actions: string[]) =>
      new iam.PolicyStatement({ sid: 'Table', actions: actions.map((a) => `dynamodb:${a}`), resources: [table.tableArn] });
    const allTableActions = ['GetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem'];
    const messageIndex = new iam.PolicyStatement({
      sid: 'MessageIndex',
      actions: ['dynamodb:Query'],
      resources: [`${table.tableArn}/index/byMessageId`],
    });
    // Edit and delete: a message found by its id; the changes since a time.
    const messageIndexes = new iam.PolicyStatement({
      sid: 'MessageIndexes',
      actions: ['dynamodb:Query'],
      resources: [`${table.tableArn}/index/byMessageId`, `${table.tableArn}/index/byChange`],
    });
    // The agents' inbox indexes, each granted only where it is queried.
    const inboxIndexes = (...names: ('byWaiting' | 'byActivity' | 'byHolder')[]) =>
      new iam.PolicyStatement({
        sid: 'InboxIndexes',
        actions: ['dynamodb:Query'],
        resources: names.map((name) => `${table.tableArn}/index/${name}`),
      });
    // The dispatch queue: a user message for n8n, or the handoff timeout's delayed job
    // (HandoffTimeoutMs set).
    const enqueue = new iam.PolicyStatement({ sid: 'Enqueue', actions: ['sqs:SendMessage'], resources: [queue.queueArn] });
    // The attachments' objects: each function gets the S3 actions its code uses (presigning
    // an upload is PutObject with PutObjectTagging for the tag; a download or HeadObject is
    // GetObject; a message taking a file removes its tag).
    const attachments = (...actions: string[]) =>
      new iam.PolicyStatement({
        sid: 'Attachments',
        actions: actions.map((a) => `s3:${a}`),
        resources: [attachmentsBucket.arnForObjects('attachments/*')],
      });
    // The attachment bucket: only the functions that sign its URLs or read it.
    const bucketVariable = { CHAT_ATTACHMENTS_BUCKET: attachmentsBucket.bucketName };
    const push = new iam.PolicyStatement({
      sid: 'Push',
      actions: ['execute-api:ManageConnections'],
      resources: [`arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${webSocketApi.ref}/${stage}/POST/@connections/*`],
    });

    const specs: FunctionSpec[] = [
      {
        id: 'SessionFunction',
        binary: 'session',
        description:
          "HTTP: POST /sessions, GET /sessions/{id}, GET|PATCH|DELETE …/messages[/{messageId}], POST …/read, POST …/attachments; a user's conversations: GET /sessions, POST …/resume, DELETE /sessions/{id}, GET /me/export, DELETE /me",
        environment: bucketVariable,
        reservedConcurrency: 'SessionReservedConcurrency',
        // BatchWriteItem: an erasure deletes a session's items 25 at a time; DeleteConnection
        // closes its sockets; DeleteObject deletes its files.
        statements: [
          tableStatement(...allTableActions, 'BatchWriteItem'),
          new iam.PolicyStatement({
            sid: 'UserIndex',
            actions: ['dynamodb:Query'],
            resources: [`${table.tableArn}/index/byUser`],
          }),
          messageIndexes,
          attachments('PutObject', 'PutObjectTagging', 'GetObject', 'DeleteObject'),
          new iam.PolicyStatement({
            sid: 'Push',
            actions: ['execute-api:ManageConnections'],
            resources: [
              `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${webSocketApi.ref}/${stage}/POST/@connections/*`,
              `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${webSocketApi.ref}/${stage}/DELETE/@connections/*`,
            ],
          }),
        ],
      },
      {
        id: 'SendFunction',
        binary: 'send',
        description:
          "HTTP: POST /sessions/{id}/messages; WebSocket: sendMessage, typing, read, ping, $default (the user's handoff, agents' typing and status)",
        environment: bucketVariable,
        reservedConcurrency: 'SendReservedConcurrency',
        // The agents list (an agent's status frame).
        statements: [
          tableStatement(...allTableActions),
          inboxIndexes('byActivity'),
          enqueue,
          attachments('GetObject', 'DeleteObjectTagging'),
          push,
        ],
      },
      {
        id: 'WebhookFunction',
        binary: 'webhook',
        description: 'HTTP: POST /webhook (n8n replies), GET /webhook, GET /health',
        reservedConcurrency: 'WebhookReservedConcurrency',
        statements: [tableStatement(...allTableActions), messageIndex, enqueue, push],
      },
      {
        id: 'ConnectFunction',
        binary: 'connect',
        description:
          "WebSocket $connect: checks ?sessionId=&token= (a user) or ?agentToken= (an agent) and stores the connection; pushes only to others (the agents list, the holder's presence)",
        reservedConcurrency: 'ConnectReservedConcurrency',
        statements: [tableStatement('GetItem', 'Query', 'PutItem'), inboxIndexes('byActivity'), push],
      },
      {
        id: 'DisconnectFunction',
        binary: 'disconnect',
        description:
          "WebSocket $disconnect: deletes the connection's items (best effort; they also expire by TTL); presence and the agents list to others",
        reservedConcurrency: 'DisconnectReservedConcurrency',
        // An agent going offline: the sessions it holds, the agents list.
        statements: [tableStatement('GetItem', 'Query', 'DeleteItem'), inboxIndexes('byActivity', 'byHolder'), push],
      },
      {
        id: 'DispatchFunction',
        binary: 'dispatch',
        description: 'SQS consumer: delivers user messages to n8n, retries with backoff, marks failures',
        // The function holds n8n's answer while it streams: up to StreamTimeoutMs (at most
        // 840 s) per record, the records of a batch concurrently, plus the store writes. Lambda
        // bills the time used, not this limit.
        timeout: Duration.seconds(900),
        // Only the function that calls n8n gets its credentials. Empty means unset.
        environment: { CHAT_N8N_AUTH_HEADER: p.N8nAuthHeader.valueAsString, ...bucketVariable },
        reservedConcurrency: 'DispatchReservedConcurrency',
        statements: [
          tableStatement(...allTableActions),
          messageIndex,
          // ReceiveMessage, DeleteMessage and GetQueueAttributes are used by the event source
          // mapping (Lambda's poller, with this role); ChangeMessageVisibility by the code.
          new iam.PolicyStatement({
            sid: 'Consume',
            actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
            resources: [queue.queueArn],
          }),
          enqueue,
          // The download URLs in what n8n is sent.
          attachments('GetObject'),
          push,
        ],
      },
      {
        id: 'AgentFunction',
        binary: 'agent',
        description: "HTTP: the agents' routes (/agent/*) and POST /sessions/{id}/handoff",
        environment: bucketVariable,
        reservedConcurrency: 'AgentReservedConcurrency',
        statements: [
          tableStatement(...allTableActions),
          inboxIndexes('byWaiting', 'byActivity', 'byHolder'),
          messageIndexes,
          enqueue,
          // DeleteObject: the files of a message the agent deletes.
          attachments('PutObject', 'PutObjectTagging', 'GetObject', 'DeleteObjectTagging', 'DeleteObject'),
          push,
        ],
      },
    ];

    // Secrets from SSM Parameter Store: every function may read exactly the named parameters,
    // and only when at least one is named. An inline policy of each role, present under that
    // condition (as in template.yaml): a function is created after its role, so it never
    // starts without the grant, which a separate policy resource would not ensure.
    const ssmArn = (name: CfnParameter) => `arn:${Aws.PARTITION}:ssm:${Aws.REGION}:${Aws.ACCOUNT_ID}:parameter${name.valueAsString}`;
    const secretsPolicy = {
      PolicyName: 'Secrets',
      PolicyDocument: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: 'Secrets',
            actions: ['ssm:GetParameters'],
            resources: [
              orNone(c.HasWebhookSecretParameter, ssmArn(p.WebhookSecretParameter)),
              orNone(c.HasSessionSecretParameter, ssmArn(p.SessionSecretParameter)),
              orNone(c.HasAuthJwtSecretParameter, ssmArn(p.AuthJwtSecretParameter)),
            ],
          }),
        ],
      }),
    };

    // The session-start job that asks n8n for a greeting: the session function may queue it
    // only when N8nSessionStart is true (as in template.yaml).
    const sessionStartPolicy = {
      PolicyName: 'SessionStart',
      PolicyDocument: new iam.PolicyDocument({
        statements: [new iam.PolicyStatement({ sid: 'SessionStart', actions: ['sqs:SendMessage'], resources: [queue.queueArn] })],
      }),
    };

    const functions = {} as Record<FunctionSpec['id'], lambda.Function>;
    for (const spec of specs) {
      const fn = new lambda.Function(this, spec.id, {
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.ARM_64,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(bootstrapDir(props.lambdaDir, spec.id, spec.binary)),
        description: spec.description,
        memorySize: 128,
        timeout: spec.timeout ?? Duration.seconds(10),
        environment: { ...environment, ...spec.environment },
      });
      // Reserved only for a positive value: a parameter, so the condition decides at deploy.
      (fn.node.defaultChild as lambda.CfnFunction).addPropertyOverride(
        'ReservedConcurrentExecutions',
        ifElse(c.reservedConcurrency[spec.id], p[spec.reservedConcurrency].valueAsString, Aws.NO_VALUE),
      );
      for (const statement of spec.statements) {
        fn.addToRolePolicy(statement);
      }
      (fn.role!.node.defaultChild as iam.CfnRole).addPropertyOverride(
        'Policies',
        spec.id === 'SessionFunction'
          ? [ifElse(c.HasSecretParameters, secretsPolicy, Aws.NO_VALUE), ifElse(c.HasSessionStart, sessionStartPolicy, Aws.NO_VALUE)]
          : ifElse(c.HasSecretParameters, [secretsPolicy], Aws.NO_VALUE),
      );
      new logs.LogGroup(this, `${spec.id}Logs`, {
        logGroupName: `/aws/lambda/${fn.functionName}`,
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      functions[spec.id] = fn;
    }

    // An explicit event source mapping that grants nothing: the SQS event source of
    // aws-lambda-event-sources would also grant sqs:GetQueueUrl, which the poller does not need.
    new lambda.EventSourceMapping(this, 'DispatchEventSource', {
      target: functions.DispatchFunction,
      eventSourceArn: queue.queueArn,
      batchSize: 10,
      reportBatchItemFailures: true,
    });

    // ----- HTTP API -------------------------------------------------------------------------

    const lambdaIntegration = (api: apigw.CfnApi, id: string, fn: lambda.Function, payloadFormatVersion?: string) =>
      new apigw.CfnIntegration(this, id, {
        apiId: api.ref,
        integrationType: 'AWS_PROXY',
        integrationUri: `arn:${Aws.PARTITION}:apigateway:${Aws.REGION}:lambda:path/2015-03-31/functions/${fn.functionArn}/invocations`,
        payloadFormatVersion,
      });
    const route = (api: apigw.CfnApi, id: string, routeKey: string, integration: apigw.CfnIntegration, extra: Partial<apigw.CfnRouteProps> = {}) =>
      new apigw.CfnRoute(this, id, { apiId: api.ref, routeKey, target: `integrations/${integration.ref}`, ...extra });
    const invokePermission = (id: string, fn: lambda.Function, api: apigw.CfnApi) =>
      new lambda.CfnPermission(this, id, {
        action: 'lambda:InvokeFunction',
        functionName: fn.functionName,
        principal: 'apigateway.amazonaws.com',
        sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${api.ref}/*`,
      });
    const after = (first: CfnResource, ...then: CfnResource[]) => then.forEach((r) => r.addResourceDependency(first));

    const sessionHttp = lambdaIntegration(httpApi, 'SessionHttpIntegration', functions.SessionFunction, '2.0');
    const sendHttp = lambdaIntegration(httpApi, 'SendHttpIntegration', functions.SendFunction, '2.0');
    const webhookHttp = lambdaIntegration(httpApi, 'WebhookHttpIntegration', functions.WebhookFunction, '2.0');
    const agentHttp = lambdaIntegration(httpApi, 'AgentHttpIntegration', functions.AgentFunction, '2.0');

    // The $default stage, auto-deployed. Its RouteSettings may only name routes that exist:
    // POST /sessions is created first, the stage after it, the other routes after the stage.
    const createSession = route(httpApi, 'CreateSessionRoute', 'POST /sessions', sessionHttp);
    const httpStage = new apigw.CfnStage(this, 'HttpApiStage', {
      apiId: httpApi.ref,
      stageName: '$default',
      autoDeploy: true,
      defaultRouteSettings: {
        throttlingRateLimit: p.HttpThrottlingRateLimit.valueAsNumber,
        throttlingBurstLimit: p.HttpThrottlingBurstLimit.valueAsNumber,
      },
      routeSettings: {
        'POST /sessions': {
          ThrottlingRateLimit: p.CreateSessionThrottlingRateLimit.valueAsNumber,
          ThrottlingBurstLimit: p.CreateSessionThrottlingBurstLimit.valueAsNumber,
        },
      },
    });
    after(createSession, httpStage);
    after(
      httpStage,
      route(httpApi, 'GetSessionRoute', 'GET /sessions/{id}', sessionHttp),
      route(httpApi, 'ListMessagesRoute', 'GET /sessions/{id}/messages', sessionHttp),
      route(httpApi, 'ListUserSessionsRoute', 'GET /sessions', sessionHttp),
      route(httpApi, 'ResumeSessionRoute', 'POST /sessions/{id}/resume', sessionHttp),
      route(httpApi, 'DeleteSessionRoute', 'DELETE /sessions/{id}', sessionHttp),
      route(httpApi, 'ExportMeRoute', 'GET /me/export', sessionHttp),
      route(httpApi, 'DeleteMeRoute', 'DELETE /me', sessionHttp),
      route(httpApi, 'EditMessageRoute', 'PATCH /sessions/{id}/messages/{messageId}', sessionHttp),
      route(httpApi, 'DeleteMessageRoute', 'DELETE /sessions/{id}/messages/{messageId}', sessionHttp),
      route(httpApi, 'MarkReadRoute', 'POST /sessions/{id}/read', sessionHttp),
      route(httpApi, 'CreateAttachmentRoute', 'POST /sessions/{id}/attachments', sessionHttp),
      route(httpApi, 'PostMessageRoute', 'POST /sessions/{id}/messages', sendHttp),
      route(httpApi, 'PostWebhookRoute', 'POST /webhook', webhookHttp),
      route(httpApi, 'GetWebhookRoute', 'GET /webhook', webhookHttp),
      route(httpApi, 'HealthRoute', 'GET /health', webhookHttp),
      // People in the loop: a user asks for a person; the agents' console.
      route(httpApi, 'HandoffRoute', 'POST /sessions/{id}/handoff', agentHttp),
      route(httpApi, 'AgentInboxRoute', 'GET /agent/inbox', agentHttp),
      route(httpApi, 'AgentSessionRoute', 'GET /agent/sessions/{id}', agentHttp),
      route(httpApi, 'AgentMessagesRoute', 'GET /agent/sessions/{id}/messages', agentHttp),
      route(httpApi, 'AgentPostMessageRoute', 'POST /agent/sessions/{id}/messages', agentHttp),
      route(httpApi, 'AgentEditMessageRoute', 'PATCH /agent/sessions/{id}/messages/{messageId}', agentHttp),
      route(httpApi, 'AgentDeleteMessageRoute', 'DELETE /agent/sessions/{id}/messages/{messageId}', agentHttp),
      route(httpApi, 'AgentChangeRoute', 'POST /agent/sessions/{id}/{action}', agentHttp),
      route(httpApi, 'AgentCannedRoute', 'GET /agent/canned', agentHttp),
      route(httpApi, 'AgentCreateCannedRoute', 'POST /agent/canned', agentHttp),
      route(httpApi, 'AgentUpdateCannedRoute', 'PUT /agent/canned/{cid}', agentHttp),
      route(httpApi, 'AgentDeleteCannedRoute', 'DELETE /agent/canned/{cid}', agentHttp),
      route(httpApi, 'AgentAgentsRoute', 'GET /agent/agents', agentHttp),
    );
    invokePermission('SessionHttpPermission', functions.SessionFunction, httpApi);
    invokePermission('SendHttpPermission', functions.SendFunction, httpApi);
    invokePermission('WebhookHttpPermission', functions.WebhookFunction, httpApi);
    invokePermission('AgentHttpPermission', functions.AgentFunction, httpApi);

    // ----- WebSocket API --------------------------------------------------------------------

    const connectWs = lambdaIntegration(webSocketApi, 'ConnectWsIntegration', functions.ConnectFunction);
    const disconnectWs = lambdaIntegration(webSocketApi, 'DisconnectWsIntegration', functions.DisconnectFunction);
    const sendWs = lambdaIntegration(webSocketApi, 'SendWsIntegration', functions.SendFunction);

    // AutoDeploy, so a route changed by a later update goes live. The routes throttled on their
    // own (typing, ping) exist before the stage; the others are created after it.
    const typing = route(webSocketApi, 'TypingRoute', 'typing', sendWs);
    const ping = route(webSocketApi, 'PingRoute', 'ping', sendWs);
    const chatter = {
      ThrottlingRateLimit: p.ChatterThrottlingRateLimit.valueAsNumber,
      ThrottlingBurstLimit: p.ChatterThrottlingBurstLimit.valueAsNumber,
    };
    const webSocketStage = new apigw.CfnStage(this, 'WebSocketStage', {
      apiId: webSocketApi.ref,
      stageName: stage,
      autoDeploy: true,
      defaultRouteSettings: {
        throttlingRateLimit: p.WebSocketThrottlingRateLimit.valueAsNumber,
        throttlingBurstLimit: p.WebSocketThrottlingBurstLimit.valueAsNumber,
      },
      routeSettings: { typing: chatter, ping: chatter },
    });
    after(typing, webSocketStage);
    after(ping, webSocketStage);
    after(
      webSocketStage,
      // The token is checked by the connect function itself (a non-2xx answer rejects the upgrade).
      route(webSocketApi, 'ConnectRoute', '$connect', connectWs, { authorizationType: 'NONE' }),
      route(webSocketApi, 'DisconnectRoute', '$disconnect', disconnectWs),
      // One-way routes: every answer to a frame is pushed with PostToConnection.
      route(webSocketApi, 'SendMessageRoute', 'sendMessage', sendWs),
      route(webSocketApi, 'ReadRoute', 'read', sendWs),
      // Frames that are not JSON, have no `action`, or an unknown one: answered with an error frame.
      route(webSocketApi, 'DefaultRoute', '$default', sendWs),
    );
    invokePermission('ConnectWsPermission', functions.ConnectFunction, webSocketApi);
    invokePermission('DisconnectWsPermission', functions.DisconnectFunction, webSocketApi);
    invokePermission('SendWsPermission', functions.SendFunction, webSocketApi);

    // ----- operations: alarms and the dashboard ---------------------------------------------

    // Plain CloudFormation alarms and dashboard (L1): metric math and a hand-laid dashboard
    // render exactly as template.yaml declares them, which the higher-level constructs do not.
    // Every alarm tells the optional AlarmTopicArn; a period with no data is not a breach.
    const alarmActions = ifElse(c.HasAlarmTopic, [p.AlarmTopicArn.valueAsString], Aws.NO_VALUE);
    const ids = ['s', 'se', 'w', 'c', 'd', 'di', 'a'];
    const fnIds = ['SessionFunction', 'SendFunction', 'WebhookFunction', 'ConnectFunction', 'DisconnectFunction', 'DispatchFunction', 'AgentFunction'] as const;
    const allFunctions = (metricName: string, id: string, label: string): cloudwatch.CfnAlarm.MetricDataQueryProperty[] => [
      { id, expression: ids.join(' + '), label },
      ...fnIds.map((fn, i) => ({
        id: ids[i],
        returnData: false,
        metricStat: {
          period: 300,
          stat: 'Sum',
          metric: { namespace: 'AWS/Lambda', metricName, dimensions: [{ name: 'FunctionName', value: functions[fn].functionName }] },
        },
      })),
    ];
    const onFunctions = (id: string, description: string, metricName: string, queryId: string, label: string) =>
      new cloudwatch.CfnAlarm(this, id, {
        alarmDescription: description,
        metrics: allFunctions(metricName, queryId, label),
        evaluationPeriods: 1,
        threshold: 1,
        comparisonOperator: 'GreaterThanOrEqualToThreshold',
        treatMissingData: 'notBreaching',
        alarmActions: alarmActions as unknown as string[],
      });
    onFunctions(
      'FunctionErrorsAlarm',
      'A function failed (an invocation ended in an error or a timeout) in the last 5 minutes. ' +
        "The dashboard's Lambda errors graph says which; its log group says why.",
      'Errors',
      'errors',
      'errors of all functions',
    );
    onFunctions(
      'FunctionThrottlesAlarm',
      "Lambda refused invocations for lack of concurrency in the last 5 minutes (the account's " +
        "quota, or a function's reserved concurrency). API Gateway answered those requests 5xx.",
      'Throttles',
      'throttles',
      'throttles of all functions',
    );
    const ours = (id: string, metricName: string): cloudwatch.CfnAlarm.MetricDataQueryProperty => ({
      id,
      returnData: false,
      metricStat: {
        period: 300,
        stat: 'Sum',
        metric: { namespace: metricsNamespace, metricName, dimensions: [{ name: 'Stage', value: stage }] },
      },
    });
    // At least 5 attempts in 5 minutes, so one failed try of a quiet hour is not an alarm.
    new cloudwatch.CfnAlarm(this, 'DispatchFailureRateAlarm', {
      alarmDescription:
        'More than 20% of the deliveries to n8n failed in the last 5 minutes (n8n down, slow ' +
        'beyond DispatchTimeoutMs, or refusing). Messages are retried, then failed and ' +
        "dead-lettered (see the runbook in the README's Operations).",
      metrics: [
        { id: 'rate', expression: 'IF(attempts >= 5, 100 * FILL(failures, 0) / attempts, 0)', label: 'failed deliveries, %' },
        ours('attempts', 'chat_dispatch_attempts_total'),
        ours('failures', 'chat_dispatch_failures_total'),
      ],
      evaluationPeriods: 1,
      threshold: 20,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
      alarmActions: alarmActions as unknown as string[],
    });
    new cloudwatch.CfnAlarm(this, 'AnswerLatencyAlarm', {
      alarmDescription:
        'The p99 answer latency (user message stored to its reply stored) over the last 5 ' +
        'minutes is above AnswerLatencyAlarmMs: n8n or its agent is slow.',
      namespace: metricsNamespace,
      metricName: 'chat_answer_latency_ms',
      dimensions: [{ name: 'Stage', value: stage }],
      extendedStatistic: 'p99',
      period: 300,
      evaluationPeriods: 1,
      threshold: p.AnswerLatencyAlarmMs.valueAsNumber,
      comparisonOperator: 'GreaterThanThreshold',
      treatMissingData: 'notBreaching',
      alarmActions: alarmActions as unknown as string[],
    });

    // The figures that matter on one page: the functions' own, then Lambda, both APIs, the
    // table and the queues. Dashboards are global, so the name holds the region too.
    const dashboard = new cloudwatch.CfnDashboard(this, 'Dashboard', {
      dashboardName: `${Aws.STACK_NAME}-${Aws.REGION}`,
      dashboardBody: this.toJsonString(
        dashboardBody({
          namespace: metricsNamespace,
          stage,
          region: Aws.REGION,
          functions: fnIds.map((fn) => [fn.replace('Function', '').toLowerCase(), functions[fn].functionName]),
          httpApi: httpApi.ref,
          webSocketApi: webSocketApi.ref,
          table: table.tableName,
          queue: queue.queueName,
          deadLetterQueue: deadLetterQueue.queueName,
        }),
      ),
    });

    // ----- outputs --------------------------------------------------------------------------

    new CfnOutput(this, 'HttpApiUrl', {
      description: 'Base URL of the HTTP API (CHAT_PUBLIC_URL), e.g. POST <HttpApiUrl>/sessions',
      value: httpApiUrl,
    });
    new CfnOutput(this, 'WebSocketUrl', {
      description: 'WebSocket URL for browsers (append ?sessionId=<id>&token=<token>); POST /sessions returns it as websocketUrl',
      value: `wss://${webSocketHost}`,
    });
    new CfnOutput(this, 'WebhookUrl', {
      description:
        "The callback URL to paste into n8n's reply step (POST, signed) - it is ${CHAT_PUBLIC_URL}/webhook and is also sent to n8n as callbackUrl",
      value: `${httpApiUrl}/webhook`,
    });
    new CfnOutput(this, 'TableName', { description: 'The DynamoDB table', value: table.tableName });
    new CfnOutput(this, 'QueueUrl', { description: 'The dispatch queue (user messages waiting for n8n)', value: queue.queueUrl });
    new CfnOutput(this, 'DlqUrl', {
      description: 'The dead-letter queue (messages n8n never accepted; the DeadLetterAlarm watches it)',
      value: deadLetterQueue.queueUrl,
    });
    new CfnOutput(this, 'AttachmentsBucketName', {
      description: 'The S3 bucket of attachments (CHAT_ATTACHMENTS_BUCKET); unsent uploads go after a day, sent ones stay',
      value: attachmentsBucket.bucketName,
    });
    new CfnOutput(this, 'DashboardUrl', {
      description: 'The CloudWatch dashboard of this stack',
      value: `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${dashboard.ref}`,
    });
  }
}

/** What the dashboard shows its figures of. */
interface DashboardOf {
  readonly namespace: string;
  readonly stage: string;
  readonly region: string;
  /** [label, function name] of each function. */
  readonly functions: [string, string][];
  readonly httpApi: string;
  readonly webSocketApi: string;
  readonly table: string;
  readonly queue: string;
  readonly deadLetterQueue: string;
}

/** The dashboard's body: the functions' own figures, then Lambda, the APIs, the table, the queues. */
function dashboardBody(d: DashboardOf): object {
  const ours = (name: string, stat: string, label: string) => [d.namespace, name, 'Stage', d.stage, { stat, label }];
  const lambda = (metric: string, stat: string) =>
    d.functions.map(([label, name]) => ['AWS/Lambda', metric, 'FunctionName', name, { stat, label }]);
  const sum = (namespace: string, dims: string[], metrics: string[]) =>
    metrics.map((m) => [namespace, m, ...dims, { stat: 'Sum', label: m }]);
  const widgets: [string, number, unknown[]][] = [
    ['Answer latency (user message stored to reply stored), ms', 300, ['p50', 'p90', 'p99'].map((s) => ours('chat_answer_latency_ms', s, s))],
    ['Dispatch latency (user message stored to n8n accepting it), ms', 300, ['p50', 'p99'].map((s) => ours('chat_dispatch_latency_ms', s, s))],
    [
      'Delivery to n8n',
      60,
      [
        ours('chat_dispatch_attempts_total', 'Sum', 'attempts'),
        ours('chat_dispatch_failures_total', 'Sum', 'failed attempts'),
        ours('chat_dead_lettered_total', 'Sum', 'dead-lettered'),
        ours('chat_reply_timeouts_total', 'Sum', 'reply deadline passed'),
      ],
    ],
    [
      'Messages and replies',
      60,
      [
        ours('chat_messages_total', 'Sum', 'user messages'),
        ours('chat_answer_latency_ms', 'SampleCount', 'replies'),
        ours('chat_streamed_replies_total', 'Sum', 'streamed replies'),
      ],
    ],
    ['Pushes', 60, [ours('chat_pushes_total', 'Sum', 'pushes'), ours('chat_pushes_gone_total', 'Sum', 'gone (410)')]],
    [
      'WebSocket connections',
      60,
      [ours('chat_connections_opened_total', 'Sum', 'opened'), ours('chat_connections_closed_total', 'Sum', 'closed')],
    ],
    ['Lambda errors', 60, lambda('Errors', 'Sum')],
    ['Lambda throttles', 60, lambda('Throttles', 'Sum')],
    ['Lambda duration p99, ms', 300, lambda('Duration', 'p99')],
    ['HTTP API', 60, sum('AWS/ApiGateway', ['ApiId', d.httpApi], ['Count', '4xx', '5xx'])],
    [
      'WebSocket API',
      60,
      sum('AWS/ApiGateway', ['ApiId', d.webSocketApi, 'Stage', d.stage], ['ConnectCount', 'MessageCount', 'ClientError', 'ExecutionError', 'IntegrationError']),
    ],
    [
      'DynamoDB table',
      60,
      sum('AWS/DynamoDB', ['TableName', d.table], ['ConsumedReadCapacityUnits', 'ConsumedWriteCapacityUnits', 'ReadThrottleEvents', 'WriteThrottleEvents']),
    ],
    [
      'Dispatch queue',
      60,
      [
        ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', d.queue, { stat: 'Maximum', label: 'waiting' }],
        ['AWS/SQS', 'ApproximateAgeOfOldestMessage', 'QueueName', d.queue, { stat: 'Maximum', label: 'oldest, s' }],
        ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', d.deadLetterQueue, { stat: 'Maximum', label: 'dead-lettered' }],
      ],
    ],
  ];
  return {
    widgets: widgets.map(([title, period, metrics], i) => ({
      type: 'metric',
      x: (i % 3) * 8,
      y: Math.floor(i / 3) * 6,
      width: 8,
      height: 6,
      properties: { title, region: d.region, view: 'timeSeries', period, metrics },
    })),
  };
}

/** The folder holding a function's `bootstrap`, in the layout of `sam build` or of cargo-lambda. */
function bootstrapDir(lambdaDir: string, id: string, binary: string): string {
  const candidates = [path.join(lambdaDir, id), path.join(lambdaDir, binary)];
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'bootstrap')));
  if (!found) {
    throw new Error(
      `no bootstrap binary for ${id} in ${candidates.join(' or ')}: build them with infra/sam-build ` +
        '(or cargo lambda build --release --arm64, then -c lambdaDir=../../target/lambda from infra/cdk)',
    );
  }
  return found;
}
