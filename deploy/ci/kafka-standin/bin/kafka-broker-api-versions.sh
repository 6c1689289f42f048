#!/bin/bash
# TEST STAND-IN of Kafka's script of the same name (the compose healthcheck runs it).
exec java -Xmx128m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
