"""Fills a moto_server with the EC2 instances and Auto Scaling group the
discovery tests look for, and prints what it made as JSON.

Environment: AWS_ENDPOINT_URL (the moto server), AWS_REGION and test keys.
"""
import json
import os

import boto3

endpoint = os.environ["AWS_ENDPOINT_URL"]
ec2 = boto3.client("ec2", endpoint_url=endpoint)
autoscaling = boto3.client("autoscaling", endpoint_url=endpoint)
image = ec2.describe_images()["Images"][0]["ImageId"]


def launch(tags, count=1):
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    made = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.micro",
                             TagSpecifications=spec)
    return [{"id": i["InstanceId"], "ip": i["PrivateIpAddress"]} for i in made["Instances"]]


cluster = {"Role": "etcd", "Cluster": "c1"}
tagged = launch(cluster, 3)
other = launch({"Role": "etcd", "Cluster": "other"})
untagged = launch({})
stopped = launch(cluster)
ec2.stop_instances(InstanceIds=[stopped[0]["id"]])

ec2.create_launch_template(LaunchTemplateName="e2d", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
autoscaling.create_auto_scaling_group(AutoScalingGroupName="e2d-asg", LaunchTemplate={"LaunchTemplateName": "e2d"},
                                      MinSize=3, MaxSize=3, DesiredCapacity=3, AvailabilityZones=["us-east-1a"])
group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["e2d-asg"])["AutoScalingGroups"][0]
ids = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
described = ec2.describe_instances(InstanceIds=ids)
asg = [{"id": i["InstanceId"], "ip": i["PrivateIpAddress"]}
       for r in described["Reservations"] for i in r["Instances"]]

print(json.dumps({"tagged": tagged, "other": other, "untagged": untagged, "stopped": stopped, "asg": asg}))
